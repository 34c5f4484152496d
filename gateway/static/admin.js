// The admin page: usage over time (tokens and cost per UTC day, stacked by model, drawn as
// SVG here: nothing is loaded from elsewhere), the top users and repositories, the models
// with their last connection test, the API keys, recent policy violations and audit events.
// Every number comes from the gateway's own API (GET /usage, /admin/*, /policy/violations)
// with the token entered here; what the token may not see is never drawn, and a token that
// is refused (expired, another org's) leaves the page empty. Text is only ever set as text.

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#0b57d0", "#e37400", "#137333", "#a142f4", "#b3261e", "#007b83", "#8a5a00",
                "#5f6368", "#c5221f", "#1e8e3e"];
const SECTIONS = ["models-card", "keys-card", "violations-card", "events-card"];

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

async function api(method, path, query = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") url.searchParams.set(k, v);
  let res;
  try {
    res = await fetch(url, { method, headers: { Authorization: `Bearer ${settings.token}` } });
  } catch (err) {
    throw new ApiError(0, "network_error", String(err));
  }
  let body = {};
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new ApiError(res.status, body.code || `http_${res.status}`, body.message || res.statusText);
  return body;
}

// -- small helpers ----------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

function status(text, kind = "") {
  $("status").textContent = text;
  $("status").dataset.kind = kind;
}

function usd(cost) {
  if (!cost) return "$0";
  return cost < 0.01 ? `$${Number(cost.toPrecision(3))}` : `$${cost.toFixed(2)}`;
}

// an axis label: short whatever the value
function tick(value, money) {
  if (money) return value >= 0.01 || !value ? usd(value) : `$${value.toExponential(1)}`;
  return new Intl.NumberFormat("en", { notation: "compact", maximumSignificantDigits: 3 }).format(value);
}

function when(value) {
  if (value === null || value === undefined) return "–";
  return new Date(value).toISOString().slice(0, 16).replace("T", " ");
}

function row(...cells) {
  return el("tr", {}, ...cells.map((c) => (c instanceof Node ? c : el("td", {}, String(c ?? "–")))));
}

function num(value) {
  return el("td", { className: "num" }, String(value));
}

// the last `days` UTC days, oldest first, as GET /usage names its day buckets
function dayBuckets(days) {
  const today = new Date();
  today.setUTCHours(0, 0, 0, 0);
  return Array.from({ length: days }, (_, i) => {
    const d = new Date(today.getTime() - (days - 1 - i) * 86_400_000);
    return d.toISOString().replace(".000Z", "Z");
  });
}

function clear() {
  $("usage-card").hidden = true;
  for (const id of SECTIONS) {
    $(id).hidden = true;
    $(id).querySelector("tbody").replaceChildren();
    $(id).querySelector(".section-error").textContent = "";
  }
  for (const id of ["chart-tokens", "chart-cost", "legend"]) $(id).replaceChildren();
  for (const id of ["top-users", "top-repositories"]) $(id).querySelector("tbody").replaceChildren();
  $("totals").textContent = "";
}

// -- the chart ------------------------------------------------------------------------------------

// Bars per day, one segment per model (bottom up in the legend's order), scaled to the
// tallest day; each segment says its model, day and value (data-* and a <title>).
function drawChart(target, buckets, models, valueOf, format, money) {
  const W = 640, H = 220, left = 56, right = 8, top = 10, bottom = 26;
  const innerW = W - left - right, innerH = H - top - bottom;
  target.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const totals = buckets.map((b) => models.reduce((sum, m) => sum + valueOf(b, m), 0));
  const max = Math.max(0, ...totals);
  const step = innerW / buckets.length;
  const parts = [
    svg("line", { class: "axis", x1: left, y1: top + innerH, x2: W - right, y2: top + innerH }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + innerH }),
    svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, tick(max, money)),
    svg("text", { x: left - 4, y: top + innerH, "text-anchor": "end" }, tick(0, money)),
  ];
  const labelled = new Set([0, Math.floor(buckets.length / 2), buckets.length - 1]);
  buckets.forEach((bucket, i) => {
    const x = left + i * step + step * 0.15;
    let y = top + innerH;
    models.forEach((model, m) => {
      const value = valueOf(bucket, model);
      if (!value) return;
      const h = max ? (value / max) * innerH : 0;
      y -= h;
      parts.push(svg("rect", {
        class: "bar", x: x.toFixed(2), y: y.toFixed(2), width: Math.max(1, step * 0.7).toFixed(2),
        height: h.toFixed(2), fill: COLORS[m % COLORS.length],
        "data-model": model, "data-day": bucket.slice(0, 10), "data-value": value,
      }, svg("title", {}, `${bucket.slice(0, 10)} · ${model}: ${format(value)}`)));
    });
    if (labelled.has(i)) {
      parts.push(svg("text", { x: x + step * 0.35, y: H - 8, "text-anchor": "middle" }, bucket.slice(5, 10)));
    }
  });
  target.replaceChildren(...parts);
}

function renderUsage(byModel, users, repositories, buckets) {
  const models = [...new Set(byModel.groups.map((g) => g.group.model))];
  const cell = new Map(byModel.series.map((p) => [`${p.bucket}|${p.group.model}`, p]));
  const tokens = (b, m) => { const p = cell.get(`${b}|${m}`); return p ? p.input_tokens + p.output_tokens : 0; };
  const cost = (b, m) => { const p = cell.get(`${b}|${m}`); return p ? p.cost_nusd / 1e9 : 0; };
  drawChart($("chart-tokens"), buckets, models, tokens, (v) => v.toLocaleString("en"), false);
  drawChart($("chart-cost"), buckets, models, cost, usd, true);
  $("legend").replaceChildren(...models.map((m, i) => el("li", {},
    svg("svg", { width: 10, height: 10 }, svg("rect", { width: 10, height: 10, fill: COLORS[i % COLORS.length] })),
    m || "(none)")));
  const t = byModel.totals;
  $("totals").textContent = `${t.requests} requests · ${t.input_tokens.toLocaleString("en")} input + ` +
    `${t.output_tokens.toLocaleString("en")} output tokens · ${usd(t.cost)} (${byModel.from.slice(0, 10)} – ${byModel.to.slice(0, 10)})`;
  const top = (usage, dim, id) => $(id).querySelector("tbody").replaceChildren(
    ...usage.groups.slice(0, 10).map((g) => row(g.group[dim] || `(no ${dim})`,
      num(g.input_tokens + g.output_tokens), num(usd(g.cost)), num(g.requests))));
  top(users, "user", "top-users");
  top(repositories, "repository", "top-repositories");
  $("usage-card").hidden = false;
}

// -- the admin sections ---------------------------------------------------------------------------

function health(h) {
  if (!h) return el("td", {}, "not tested");
  if (h.ok) return el("td", { className: "health-ok" }, `ok · ${Math.round(h.latency_ms ?? 0)} ms · ${when(h.at)}`);
  return el("td", { className: "health-failed" }, `${h.error_kind}: ${h.error || ""} · ${when(h.at)}`);
}

async function loadModels(query, stale) {
  const { models } = await api("GET", "/admin/models", query);
  if (stale()) return;
  $("models").querySelector("tbody").replaceChildren(...models.map((m) => {
    const cell = health(m.health);
    const test = el("button", { type: "button", className: "small" }, "Test");
    test.addEventListener("click", async () => {
      test.disabled = true;
      try {
        const { result } = await api("POST", `/admin/models/${encodeURIComponent(m.id)}/test`, query);
        cell.replaceWith(health(result));
      } catch (err) {
        cell.replaceChildren(`${err.code}: ${err.message}`);
      } finally {
        test.disabled = false;
      }
    });
    const tr = row(m.id, m.provider, m.model || m.id, m.org_id ? `org ${m.org_id}` : m.source,
      `${m.prices.input_per_mtok ?? "–"} / ${m.prices.output_per_mtok ?? "–"} (${m.prices.source})`,
      cell, el("td", {}, test));
    tr.dataset.model = m.id;
    return tr;
  }));
}

async function loadKeys(query, stale) {
  const { api_keys: keys } = await api("GET", "/admin/api-keys", query);
  if (stale()) return;
  $("api-keys").querySelector("tbody").replaceChildren(...keys.map((k) => row(
    k.id, k.user, k.role, k.models ? k.models.join(", ") : "any", when(k.created_at), when(k.expires_at))));
}

async function loadViolations(query, stale) {
  const { violations } = await api("GET", "/policy/violations", { ...query, take: 20 });
  if (stale()) return;
  $("violations").querySelector("tbody").replaceChildren(...violations.map((v) => row(
    when(v.at), v.policy_id, v.stage, v.action, v.user_id, v.excerpt)));
}

async function loadEvents(query, stale) {
  const { events } = await api("GET", "/admin/events", { ...query, take: 20 });
  if (stale()) return;
  const skip = new Set(["id", "type", "at", "org_id", "actor", "actor_role"]);
  $("audit-events").querySelector("tbody").replaceChildren(...events.map((e) => row(
    when(e.at), e.type, e.actor ? `${e.actor} (${e.actor_role})` : "–",
    Object.entries(e).filter(([k]) => !skip.has(k)).map(([k, v]) => `${k}=${v}`).join(" "))));
}

// A section the token may not read (a user's token and the admin API) says so, shows no data.
async function section(id, fill, query, stale) {
  try {
    await fill(query, stale);
  } catch (err) {
    if (err.status === 401) throw err;
    if (stale()) return;
    $(id).querySelector(".section-error").textContent = `${err.code}: ${err.message}`;
  }
  if (!stale()) $(id).hidden = false;
}

// Only the latest load draws: the page's own load at start (the token saved before) may
// still be waiting when the form loads another token, and its answers must not land on the
// new page (a user's page listing an admin's models).
let loads = 0;

async function load() {
  const mine = ++loads;
  const stale = () => mine !== loads;
  clear();
  status("Loading…");
  const org = settings.org;
  const buckets = dayBuckets(Number($("days").value));
  const query = org ? { org_id: org } : {};
  const window = { ...query, bucket: "day", from: buckets[0].slice(0, 10) };
  try {
    const [byModel, users, repositories] = await Promise.all([
      api("GET", "/usage", { ...window, group_by: "model" }),
      api("GET", "/usage", { ...window, group_by: "user" }),
      api("GET", "/usage", { ...window, group_by: "repository" }),
    ]);
    if (stale()) return;
    renderUsage(byModel, users, repositories, buckets);
    await Promise.all([
      section("models-card", loadModels, query, stale),
      section("keys-card", loadKeys, query, stale),
      section("violations-card", loadViolations, query, stale),
      section("events-card", loadEvents, query, stale),
    ]);
  } catch (err) {
    if (stale()) return;
    clear(); // an expired or refused token sees nothing at all
    status(`${err.code}: ${err.message}`, "error");
    return;
  }
  if (!stale()) status(`Loaded ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC.`);
}

$("token").value = settings.token;
$("org").value = settings.org;
$("auth-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  settings.save($("token").value.trim(), $("org").value.trim());
  load();
});
if (settings.token) load();
