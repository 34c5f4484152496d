// Run from a second origin. Query: gw (the gateway), es (where the EventSource connects:
// the gateway, or a proxy in front of it that breaks the first connection), token, org,
// session. Results land in window.result; window.result.done is set at the end.

const q = new URLSearchParams(location.search);
const gw = q.get("gw");
const es = q.get("es") || gw;
const auth = { Authorization: `Bearer ${q.get("token")}` };
const result = (window.result = { fetch: { events: [], ids: [], text: "" }, es: { ids: [], text: "", opens: 0, drops: 0 } });

function withTimeout(promise, ms, what) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: timed out`)), ms))]);
}

// the native EventSource: no headers, so the start event's resume_token goes in the URL
function followWithEventSource(start) {
  return new Promise((resolve) => {
    const url = new URL("/api/conversation/stream", es);
    url.searchParams.set("message_id", start.message_id);
    url.searchParams.set("resume_token", start.resume_token);
    const source = new EventSource(url);
    source.onopen = () => { result.es.opens += 1; };
    source.addEventListener("content", (e) => {
      result.es.ids.push(e.lastEventId);
      result.es.text += JSON.parse(e.data).delta;
    });
    source.addEventListener("error", (e) => {
      // the stream's own `event: error` frames carry data; a broken connection does not
      if (e.data) result.es.streamError = JSON.parse(e.data);
      else result.es.drops += 1;
    });
    source.addEventListener("end", (e) => {
      result.es.end = JSON.parse(e.data);
      source.close(); // or EventSource would reconnect to a finished stream
      resolve();
    });
  });
}

async function main() {
  const { readEventStream } = await import(new URL("/static/sse.js", gw)); // a cross-origin module
  const res = await fetch(new URL(`/api/conversation/stream_chat?org_id=${q.get("org")}`, gw), {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ chat_session_id: q.get("session"), message: "stream me a reply" }),
  });
  result.fetch.status = res.status;
  result.fetch.requestId = res.headers.get("X-Request-Id"); // readable: an exposed header
  let following = null;
  await readEventStream(res.body, (ev) => {
    const data = JSON.parse(ev.data);
    result.fetch.events.push(ev.type);
    if (ev.type === "start") {
      result.fetch.start = data;
      following = followWithEventSource(data);
    } else if (ev.type === "content") {
      result.fetch.text += data.delta;
      result.fetch.ids.push(ev.id);
    } else if (ev.type === "end") {
      result.fetch.end = data;
    }
  });
  await withTimeout(following, 15000, "EventSource");

  // fetch can resume too, with Authorization and Last-Event-ID (a preflighted GET)
  const third = result.fetch.ids[2];
  const resumed = await fetch(
    new URL(`/api/conversation/stream?org_id=${q.get("org")}&message_id=${result.fetch.start.message_id}`, gw),
    { headers: { ...auth, "Last-Event-ID": third } },
  );
  result.resume = { status: resumed.status, ids: [], text: "" };
  await readEventStream(resumed.body, (ev) => {
    if (ev.type !== "content") return;
    result.resume.ids.push(ev.id);
    result.resume.text += JSON.parse(ev.data).delta;
  });
}

main()
  .catch((err) => { result.error = String(err && err.stack || err); })
  .finally(() => {
    result.done = true;
    document.getElementById("out").textContent = JSON.stringify(result, null, 2);
  });
