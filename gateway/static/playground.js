// The playground: pick or create a conversation and a session, send a message, watch the
// answer stream in (fetch + the SSE parser in sse.js), stop it, and when the connection
// drops, attach again through GET /api/conversation/stream with Last-Event-ID.

import { eventSeq, readEventStream } from "./sse.js";

const $ = (id) => document.getElementById(id);
const MAX_RECONNECTS = 8;
const FINISHED = { stop: "Done.", length: "Done (length limit).", cancelled: "Stopped." };

const state = {
  conversationId: null,
  turn: null, // the answer being streamed
};

// -- settings and requests ----------------------------------------------------------------

const settings = {
  get token() { return localStorage.getItem("cgw.token") || ""; },
  get org() { return localStorage.getItem("cgw.org") || ""; },
  save(token, org) {
    localStorage.setItem("cgw.token", token);
    localStorage.setItem("cgw.org", org);
  },
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(res) {
  let body = {};
  try { body = await res.json(); } catch { /* not JSON */ }
  const err = body.error && typeof body.error === "object" ? body.error : body;
  return new ApiError(res.status, err.code || err.type || `http_${res.status}`,
                      err.message || res.statusText || "request failed");
}

// Every request carries the bearer token; the Conversation Service routes also ?org_id=.
async function api(method, path, { body, query = {}, headers = {}, signal, org = true } = {}) {
  const url = new URL(path, location.origin);
  if (org) url.searchParams.set("org_id", settings.org);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const init = { method, signal, headers: { Authorization: `Bearer ${settings.token}`, ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  if (!res.ok) throw await errorOf(res);
  return res;
}

const json = async (...args) => (await api(...args)).json();

// -- small view helpers -------------------------------------------------------------------

function status(text, kind = "") {
  $("status").textContent = text;
  $("status").dataset.kind = kind;
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function addEvent(kind, title, detail) {
  const item = el("li", { className: `event ${kind}` }, el("strong", {}, title), " ", detail);
  item.dataset.kind = kind;
  $("events").append(item);
}

function showError(err, prefix = "") {
  const code = err instanceof ApiError ? err.code : "network_error";
  addEvent("error", `${prefix}${code}`, err.message);
  status(`${prefix}${code}: ${err.message}`, "error");
}

function addMessage(role, text, label = role) {
  const who = el("div", { className: "who" }, label);
  const body = el("div", { className: "text" }, text);
  const item = el("li", { className: `message ${role}` }, who, body);
  $("transcript").append(item);
  item.scrollIntoView({ block: "end" });
  return { item, who, body };
}

function usageText(usage) {
  if (!usage) return "–";
  return `${usage.input_tokens} in · ${usage.output_tokens} out${usage.estimated ? " (estimated)" : ""}`;
}

function setBusy(busy) {
  $("send").disabled = busy || !$("session").value;
  $("stop").disabled = !busy;
  $("prompt-form").setAttribute("aria-busy", String(busy));
}

// -- conversations, sessions, models ------------------------------------------------------

async function loadModels() {
  try {
    const models = await json("GET", "/v1/models", { org: false });
    $("models").replaceChildren(...models.data.map((m) => el("option", { value: m.id })));
  } catch { /* no model list: the model id is typed */ }
}

async function loadConversations() {
  const { conversations } = await json("GET", "/api/conversation/list", { query: { limit: 100 } });
  $("conversations").replaceChildren(...conversations.map((c) => {
    const button = el("button", { type: "button", className: "link" }, c.title || c.id);
    button.addEventListener("click", () => selectConversation(c.id).catch(showError));
    const item = el("li", {}, button);
    if (c.id === state.conversationId) item.setAttribute("aria-current", "true");
    return item;
  }));
}

async function selectConversation(id, sessionId = null) {
  state.turn?.controller.abort(); // leave a stream that is still running (it goes on server-side)
  state.turn = null;
  const conv = await json("GET", "/api/conversation/get_with_sessions", { query: { conversation_id: id } });
  if (id !== state.conversationId) $("events").replaceChildren(); // they belong to the conversation
  state.conversationId = id;
  $("chat-heading").textContent = conv.title || conv.id;
  $("session").replaceChildren(...conv.sessions.map((s) =>
    el("option", { value: s.id }, `${s.model_id} · ${s.id.slice(0, 8)}`)));
  if (conv.sessions.length) $("session").value = sessionId || conv.sessions.at(-1).id;
  $("session").disabled = conv.sessions.length === 0;
  $("new-session").disabled = false;
  $("send").disabled = true; // until the transcript is drawn: a reload would wipe a new answer
  await loadConversations();
  const page = await json("GET", "/api/conversation/messages", { query: { conversation_id: id, limit: 200 } });
  $("transcript").replaceChildren();
  for (const m of page.messages) addMessage(m.role, m.content, m.role === "assistant" ? m.model_id : "you");
  setBusy(false);
  status(conv.sessions.length ? "" : "Create a session on a model to start.");
}

// -- one answer: stream, stop, reconnect --------------------------------------------------

function onEvent(turn, ev) {
  let data;
  try { data = JSON.parse(ev.data); } catch { return; }
  if (ev.type === "content") {
    const seq = eventSeq(ev.id);
    if (seq && seq <= turn.lastSeq) return; // already shown (a replay overlapping what we saw)
    turn.lastSeq = seq || turn.lastSeq + 1;
    turn.lastId = ev.id;
    turn.text.appendData(data.delta);
    $("chunks").value = String(++turn.chunks);
  } else if (ev.type === "start") {
    if (!turn.messageId) { // a resumed stream starts with `start` again
      turn.messageId = data.message_id;
      turn.who.textContent = data.model;
      turn.item.dataset.messageId = data.message_id;
      $("stop").disabled = false;
    }
  } else if (ev.type === "error") {
    addEvent("error", data.code, data.message);
  } else if (ev.type === "end") {
    turn.ended = true;
    $("usage").value = usageText(data.usage);
    $("finish").value = data.finish_reason;
    turn.item.dataset.finish = data.finish_reason;
    if (data.conversation_usage) {
      const t = data.conversation_usage;
      $("totals").value = `${t.tokens_in} in · ${t.tokens_out} out`;
    }
    for (const p of data.policy || []) {
      const name = p.policy || p.policy_id || p.id || "policy";
      const detail = Object.entries(p).filter(([k]) => k !== "policy" && k !== "id")
        .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
      addEvent("policy", name, detail);
    }
  }
}

// Read one response to its end; false when the connection broke before `end`.
async function follow(turn, res) {
  try {
    await readEventStream(res.body, (ev) => onEvent(turn, ev));
  } catch (err) {
    if (turn.controller.signal.aborted) throw err;
  }
  return turn.ended;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function reconnect(turn) {
  for (let attempt = 1; attempt <= MAX_RECONNECTS && !turn.ended; attempt++) {
    status(`Connection lost; reconnecting (${attempt})…`, "warn");
    await sleep(Math.min(200 * 2 ** (attempt - 1), 3000));
    let res;
    try {
      res = await api("GET", "/api/conversation/stream", {
        query: { message_id: turn.messageId },
        headers: turn.lastId ? { "Last-Event-ID": turn.lastId } : {},
        signal: turn.controller.signal,
      });
    } catch (err) {
      if (err instanceof ApiError && err.status < 500) throw err; // will not get better
      continue;
    }
    turn.reconnects += 1;
    $("transcript").dataset.reconnects = String(turn.reconnects);
    if (await follow(turn, res)) return;
  }
  if (!turn.ended) throw new ApiError(0, "connection_lost", "the stream could not be resumed");
}

async function send(message) {
  const { item, who, body } = addMessage("assistant", "", "…");
  const turn = {
    messageId: null, lastSeq: 0, lastId: null, ended: false, chunks: 0, reconnects: 0,
    controller: new AbortController(), item, who, text: body.appendChild(document.createTextNode("")),
  };
  state.turn = turn;
  $("chunks").value = "0";
  $("usage").value = "–";
  $("finish").value = "–";
  setBusy(true);
  status("Streaming…");
  try {
    const res = await api("POST", "/api/conversation/stream_chat", {
      body: {
        chat_session_id: $("session").value, message,
        on_disconnect: $("keep").checked ? "continue" : "cancel",
      },
      signal: turn.controller.signal,
    });
    if (!(await follow(turn, res))) {
      if (!turn.messageId) throw new ApiError(0, "connection_lost", "the stream broke before it began");
      await reconnect(turn);
    }
    const ended = FINISHED[turn.item.dataset.finish] || `Ended: ${turn.item.dataset.finish}.`;
    status(turn.reconnects ? `${ended.slice(0, -1)} (resumed ${turn.reconnects}×).` : ended);
  } catch (err) {
    if (turn.controller.signal.aborted) return; // the user went to another conversation
    item.dataset.finish = "failed";
    showError(err);
  } finally {
    if (state.turn === turn) state.turn = null;
    setBusy(Boolean(state.turn));
  }
}

async function stop() {
  const turn = state.turn;
  if (!turn || !turn.messageId) return;
  $("stop").disabled = true;
  try {
    await api("POST", "/api/conversation/stop", { body: { message_id: turn.messageId } });
    status("Stopping…");
  } catch (err) {
    showError(err, "stop: ");
  }
}

// -- wiring --------------------------------------------------------------------------------

async function start() {
  $("token").value = settings.token;
  $("org").value = settings.org;
  if (!settings.token || !settings.org) {
    status("Enter a bearer token and an org id.");
    return;
  }
  await Promise.all([loadModels(), loadConversations()]);
  status("Ready.");
}

$("auth-form").addEventListener("submit", (e) => {
  e.preventDefault();
  settings.save($("token").value.trim(), $("org").value.trim());
  start().catch(showError);
});

$("refresh").addEventListener("click", () => loadConversations().catch(showError));

$("conversation-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const conv = await json("POST", "/api/conversation/create", { body: { title: $("conversation-title").value } });
    $("conversation-title").value = "";
    await selectConversation(conv.id);
  } catch (err) { showError(err); }
});

$("session-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!state.conversationId) return;
  try {
    const session = await json("POST", "/api/conversation/create_session", {
      body: { conversation_id: state.conversationId, model_id: $("model").value.trim() },
    });
    await selectConversation(state.conversationId, session.id);
    status(`Session on ${session.model_id} ready.`);
  } catch (err) { showError(err); }
});

$("session").addEventListener("change", () => setBusy(false));

$("prompt-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const message = $("prompt").value.trim();
  if (!message || state.turn || !$("session").value) return;
  addMessage("user", message, "you");
  $("prompt").value = "";
  send(message);
});

$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("prompt-form").requestSubmit();
});

$("stop").addEventListener("click", stop);

start().catch(showError);
