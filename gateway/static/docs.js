// Renders /openapi.json as a page, offline: operations grouped by tag (parameters,
// request body, responses) and the component schemas, with $refs as links.

const REF = "#/components/schemas/";
const METHODS = ["get", "post", "put", "patch", "delete"];

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// `code` spans of the document's text, as <code>; the rest stays text
function prose(text = "") {
  const span = el("span");
  text.split("`").forEach((part, i) => span.append(i % 2 ? el("code", {}, part) : part));
  return span;
}

const anchor = (kind, name) => `${kind}-${name.replace(/[^A-Za-z0-9_-]+/g, "-")}`;

// A schema as indented JSON in which every "$ref" is a link to its component.
function schemaBlock(schema) {
  const pre = el("pre");
  const text = JSON.stringify(schema, null, 2);
  const refs = /"(#\/components\/schemas\/[^"]+)"/g;
  let last = 0;
  for (let m; (m = refs.exec(text)) !== null;) {
    pre.append(text.slice(last, m.index));
    const name = m[1].slice(REF.length);
    pre.append(el("a", { href: `#${anchor("schema", name)}` }, `"${m[1]}"`));
    last = m.index + m[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

function schemaSummary(schema = {}) {
  if (schema.$ref) return schema.$ref.slice(REF.length);
  const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
  const bits = [type];
  if (schema.enum) bits.push(`one of ${schema.enum.join(", ")}`);
  if (schema.default !== undefined) bits.push(`default ${JSON.stringify(schema.default)}`);
  if (schema.minimum !== undefined) bits.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) bits.push(`≤ ${schema.maximum}`);
  return bits.join(", ");
}

function table(head, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))));
}

function schemaLink(schema) {
  if (!schema) return "";
  if (!schema.$ref) return el("code", {}, JSON.stringify(schema));
  const name = schema.$ref.slice(REF.length);
  return el("a", { href: `#${anchor("schema", name)}` }, name);
}

// A body's schema: a link to its component, and the component itself, one level resolved.
function bodyBlocks(doc, content = {}) {
  return Object.entries(content).map(([media, { schema }]) => {
    const resolved = schema?.$ref ? doc.components.schemas[schema.$ref.slice(REF.length)] : schema;
    return el("div", {}, el("p", {}, el("code", {}, media), " ", schemaLink(schema)),
              resolved ? schemaBlock(resolved) : null);
  });
}

function responsesTable(op) {
  return table(["status", "description", "body"], Object.entries(op.responses || {}).map(([code, r]) => {
    const headers = Object.keys(r.headers || {});
    const bodies = el("span");
    for (const [media, { schema } = {}] of Object.entries(r.content || {})) {
      bodies.append(el("code", {}, media), " ", schemaLink(schema), el("br"));
    }
    const text = prose(r.description);
    if (headers.length) text.append(` (headers: ${headers.join(", ")})`);
    return [el("strong", {}, code), text, bodies];
  }));
}

function operationView(doc, method, path, op) {
  const details = el("details", { id: anchor("op", `${method}-${path}`) });
  const summary = el("summary", {},
    el("span", { className: `method ${method}` }, method), " ", el("code", {}, path), " — ", prose(op.summary));
  if (op["x-undocumented"]) summary.append(" ", el("span", { className: "tag-undocumented" }, "undocumented"));
  details.append(summary);
  if (op.description) details.append(el("p", {}, prose(op.description)));
  const security = (op.security || []).map((s) => Object.keys(s).join(" + ")).filter(Boolean);
  details.append(el("p", {}, el("strong", {}, "Auth: "), security.length ? security.join(" or ") : "none"));
  if (op.parameters?.length) {
    details.append(el("h4", {}, "Parameters"), table(["name", "in", "required", "schema", "description"],
      op.parameters.map((p) => [el("code", {}, p.name), p.in, p.required ? "yes" : "no",
                                schemaSummary(p.schema), prose(p.description)])));
  }
  if (op.requestBody) {
    details.append(el("h4", {}, "Request body"), ...bodyBlocks(doc, op.requestBody.content));
  }
  details.append(el("h4", {}, "Responses"), responsesTable(op));
  const success = Object.entries(op.responses || {}).find(([code]) => code.startsWith("2"));
  if (success?.[1].content) details.append(...bodyBlocks(doc, success[1].content));
  return details;
}

function render(doc) {
  const main = document.getElementById("docs");
  document.getElementById("title").textContent = `${doc.info.title} API ${doc.info.version}`;
  document.title = `${doc.info.title} API docs`;
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const tag = item[method].tags?.[0] || "Other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, item[method]]);
    }
  }
  const nav = el("nav", { ariaLabel: "Operations" }, el("h2", {}, "Operations"));
  const list = el("ul");
  const sections = [];
  for (const [tag, ops] of byTag) {
    const id = anchor("tag", tag);
    list.append(el("li", {}, el("a", { href: `#${id}` }, tag), ` (${ops.length})`));
    sections.push(el("section", { id }, el("h2", {}, tag),
                     ...ops.map(([m, p, op]) => operationView(doc, m, p, op))));
  }
  nav.append(list);
  const schemas = Object.entries(doc.components?.schemas || {}).map(([name, schema]) =>
    el("details", { id: anchor("schema", name) }, el("summary", {}, el("code", {}, name)), schemaBlock(schema)));
  main.replaceChildren(
    el("p", {}, prose(doc.info.description)), nav, ...sections,
    el("section", { id: "schemas" }, el("h2", {}, "Schemas"), ...schemas));
  main.setAttribute("aria-busy", "false");
  // open what a link points at
  window.addEventListener("hashchange", openTarget);
  openTarget();
}

function openTarget() {
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target && target.tagName === "DETAILS") target.open = true;
}

fetch("/openapi.json")
  .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
  .then(render)
  .catch((err) => {
    document.getElementById("docs").replaceChildren(el("p", { role: "alert" }, `Could not load /openapi.json: ${err.message}`));
  });
