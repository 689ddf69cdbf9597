// The Scheduler page: Setup and Run Manager over the REST API (same origin, cookie session + CSRF header).
// Plain ES module, no build step. Views render into <main>; the URL hash is the router.

const CONFIG = JSON.parse(document.getElementById("page-config").textContent);
const API = CONFIG.api_base;
const REFRESH_MS = 3000;
const IN_PROGRESS = new Set(CONFIG.in_progress_statuses);
const STATUS_HELP = Object.fromEntries(CONFIG.run_statuses.map((s) => [s.value, s.help]));
const ACTION_LABELS = { submit: "Submit", delete: "Delete", cancel: "Cancel run", retry: "Retry" };
const ACTION_CONFIRM = {
  submit: "Submit this run? Its staged effects will be applied.",
  delete: "Delete this preview? Nothing will be applied; the record stays for audit.",
  cancel: "Cancel this run before it starts?",
  archive: "Archive this job? It stops firing and is hidden from the list; its history is kept.",
};

const main = document.getElementById("main");
let flash = null; // {text, kind} shown once at the top of the next view
let timer = null; // the active view's auto-refresh timer
let viewToken = 0; // bumps on every navigation so late answers of a left view are dropped

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  return append(el, children);
}

// Element.append would print null as "null"; this skips empty children and flattens arrays.
function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function replace(el, ...children) {
  el.replaceChildren();
  return append(el, ...children);
}

let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

const ACRONYMS = new Set(["api", "csv", "erp", "gl", "http", "https", "id", "json", "sftp", "url"]);

function humanize(name) {
  const text = String(name).replace(/_/g, " ")
    .split(" ").map((w) => (ACRONYMS.has(w.toLowerCase()) ? w.toUpperCase() : w)).join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// Docstrings use reStructuredText ``code`` quotes; on the page they are plain text.
const plain = (text) => String(text).replace(/``/g, "");

// A schema title in sentence case: pydantic's generated "Min Days Past Due" and "DunningTier" read as
// "Min days past due" and "Dunning tier"; a title written by hand is kept as it is.
function titleOf(schema, name) {
  const generated = name ? name.split("_").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(" ") : null;
  if (schema.title && schema.title !== generated) {
    return /^[A-Z][a-z0-9]+([A-Z][a-z0-9]+)+$/.test(schema.title)
      ? humanize(schema.title.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase())
      : schema.title;
  }
  return name ? humanize(name) : "Item";
}

function badge(status) {
  return h("span", { class: `badge status-${String(status).toLowerCase()}`, title: STATUS_HELP[status] || null }, status);
}

function pad(n) {
  return String(n).padStart(2, "0");
}

// Times are shown in UTC (the API's zone); the browser's local time is in the tooltip.
function fmtTime(iso, { zone = true } = {}) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const text = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${zone ? " UTC" : ""}`;
  return h("time", { datetime: iso, title: d.toString() }, text);
}

function fmtValue(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? "Yes" : "No";
  if (Array.isArray(value) && value.every((v) => v === null || typeof v !== "object")) {
    return value.map(fmtValue).join(", ") || "—";
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// Nested lists and tables get the whole width under their term instead of a narrow column.
function definitionList(rows) {
  const wide = (value) => value instanceof Element && value.matches("dl.definition, .scroll-x");
  return h("dl", { class: "definition" }, rows.filter(Boolean).map(([term, value]) =>
    [h("dt", {}, term), h("dd", { class: wide(value) ? "wide" : null }, value)]));
}

function table(caption, headers, rows, { empty = "Nothing to show." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", { class: caption.startsWith("!") ? "visually-hidden" : null }, caption.replace(/^!/, "")),
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows)));
}

const count = (n) => Number(n || 0).toLocaleString("en-US");

// Progress in records: "1,204 of 5,000 records" (staged while a run evaluates, applied once submitted).
function progressBar(progress) {
  const p = progress || {};
  const percent = Number(p.percent) || 0;
  const done = count(p.records_done);
  const phase = p.phase === "staging" ? " staged" : p.phase === "applying" ? " applied" : "";
  const text = p.records_total === null || p.records_total === undefined
    ? (p.records_done ? `${done} records${phase} so far` : `${percent}%`)
    : `${done} of ${count(p.records_total)} records${phase}`;
  return h("span", { class: "progress" },
    h("progress", { max: "100", value: String(percent), "aria-label": `Progress ${percent}%` }),
    h("span", { class: "progress-text" }, text));
}

// Amounts as the API formats them (currency, separators, the currency's decimals).
function amountsOf(list) {
  return (list || []).map((a) => h("span", { class: "amount", dataset: { field: a.field } },
    h("span", { class: "muted" }, `${humanize(a.name || a.field)} `), a.display));
}

function notice(text, kind = "info") {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

function errorBox() {
  return h("div", { class: "form-error", role: "alert", "aria-live": "assertive", hidden: true });
}

function showError(box, err) {
  replace(box, ...errorContent(err));
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

function clearError(box) {
  box.hidden = true;
  replace(box);
  const form = box.closest("form");
  if (!form) return;
  for (const el of form.querySelectorAll(".field-problem.from-api")) el.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

const FIELD_OF_CODE = { invalid_cron: "cron", unknown_timezone: "timezone", job_name_taken: "name" };

// Repeat an API error's problems under the fields they name (inputs are named by their path, e.g.
// "properties.tiers.0.name"); the whole message stays in the box next to the submit button.
function markFields(form, err, propertiesPrefix) {
  const targets = [];
  const named = FIELD_OF_CODE[err.code] || (typeof err.details?.field === "string" ? err.details.field : null);
  if (named) targets.push([[named], err.message]);
  for (const e of Array.isArray(err.details?.errors) ? err.details.errors : []) {
    const loc = (e.loc || []).filter((p) => p !== "body").map(String);
    targets.push([err.code === "invalid_properties" ? [propertiesPrefix, ...loc] : loc, e.msg]);
  }
  for (const [path, message] of targets) {
    let input = null;
    for (let n = path.length; n > 0 && !input; n--) {
      input = form.querySelector(`[name="${CSS.escape(path.slice(0, n).join("."))}"]`);
    }
    if (!input) continue;
    input.setAttribute("aria-invalid", "true");
    input.closest(".field")?.append(h("p", { class: "field-problem from-api" }, message));
  }
}

// A confirmation step rendered in place of a native dialog: explicit and keyboard friendly.
function confirmInline(slot, text, confirmLabel, onConfirm) {
  const yes = h("button", { type: "button", class: "danger", onclick: () => { replace(slot); onConfirm(); } },
    confirmLabel);
  replace(slot, h("div", { class: "confirm", role: "group", "aria-label": "Confirm" },
    h("span", {}, text), yes,
    h("button", { type: "button", class: "secondary", onclick: () => replace(slot) }, "Keep")));
  yes.focus();
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    const payload = body && typeof body === "object" ? (body.error && typeof body.error === "object" ? body.error : body) : {};
    const message = payload.message || (typeof payload.detail === "string" ? payload.detail : null) ||
      (typeof body === "string" && body.length < 300 && body) || `The server answered ${status}.`;
    super(message);
    this.status = status;
    this.code = payload.code || null;
    this.details = payload.details || (Array.isArray(payload.detail) ? { errors: payload.detail } : null);
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) search.append(key, v);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function api(method, path, { body, params, headers } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (method !== "GET") {
    const csrf = cookie(CONFIG.csrf_cookie);
    if (csrf) init.headers[CONFIG.csrf_header] = csrf;
  }
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path + query(params), init);
  } catch {
    throw new ApiError(0, { message: "Cannot reach the scheduler API. Check your connection and try again." });
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : await response.text();
  if (response.status === 401) {
    renderLogin(new ApiError(401, data));
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const itemsOf = (data) => (Array.isArray(data) ? data : (data && data.items) || []);

// An API error in plain words: the message, then each field problem on its own line.
function errorContent(err) {
  const parts = [h("p", {}, err.message || String(err))];
  const details = (err && err.details) || {};
  const problems = [];
  for (const e of Array.isArray(details.errors) ? details.errors : []) {
    const where = (e.loc || []).filter((p) => p !== "body")
      .map((p) => (typeof p === "number" ? `#${p + 1}` : humanize(p))).join(" › ");
    problems.push(where ? `${where}: ${e.msg}` : e.msg);
  }
  if (details.allowed_actions) {
    problems.push(`Allowed now: ${details.allowed_actions.map((a) => ACTION_LABELS[a] || a).join(", ") || "none"}.`);
  }
  if (problems.length) parts.push(h("ul", {}, problems.map((p) => h("li", {}, p))));
  return parts;
}

let jobTypesCache = null;

// Who is logged in (GET /me): name, role, and `may`, the actions beyond reading that the role allows.
// The page offers only those; the API refuses the others anyway.
let me = null;
async function whoAmI() {
  if (!me) me = await api("GET", "/me");
  return me;
}
const may = (action) => Boolean(me && me.may && me.may[action]);

function forgetSession() {
  me = null;
  jobTypesCache = null;
}
async function jobTypes() {
  if (!jobTypesCache) {
    const list = itemsOf(await api("GET", "/job-types"));
    jobTypesCache = new Map(list.map((t) => [t.name, t]));
  }
  return jobTypesCache;
}

async function allJobs(params = {}) {
  const jobs = [];
  let cursor = null;
  do {
    const data = await api("GET", "/jobs", { params: { limit: 200, ...params, cursor } });
    jobs.push(...itemsOf(data));
    cursor = data && data.next_cursor;
  } while (cursor && jobs.length < 2000);
  return jobs;
}

// ---------------------------------------------------------------- schema-driven fields

function deref(schema, root) {
  let s = schema || {};
  for (let i = 0; i < 10; i++) {
    if (s.$ref) {
      const name = s.$ref.split("/").pop();
      const { $ref, ...rest } = s;
      s = { ...((root.$defs || root.definitions || {})[name] || {}), ...rest };
    } else if (Array.isArray(s.allOf) && s.allOf.length === 1) {
      const { allOf, ...rest } = s;
      s = { ...allOf[0], ...rest };
    } else break;
  }
  return s;
}

// Reduce a property schema to {kind, schema, nullable}; kinds drive which input is rendered.
function classify(schema, root) {
  let s = deref(schema, root);
  let nullable = false;
  if (Array.isArray(s.anyOf)) {
    const options = s.anyOf.map((o) => deref(o, root));
    const nonNull = options.filter((o) => o.type !== "null");
    nullable = nonNull.length < options.length;
    const types = nonNull.map((o) => o.type).sort().join(",");
    const meta = { title: s.title, description: s.description, default: s.default };
    if (nonNull.length === 1) s = { ...nonNull[0], ...clean(meta) };
    else if (types === "number,string") return { kind: "decimal", schema: { ...nonNull[0], ...clean(meta) }, nullable };
    else return union(s, nonNull, nullable);
  }
  if (Array.isArray(s.oneOf)) return union(s, s.oneOf.map((o) => deref(o, root)), nullable);
  if (Array.isArray(s.enum)) return { kind: "enum", schema: s, nullable };
  if (s.const !== undefined) return { kind: "const", schema: s, nullable };
  switch (s.type) {
    case "boolean": return { kind: "boolean", schema: s, nullable };
    case "integer": return { kind: "integer", schema: s, nullable };
    case "number": return { kind: "number", schema: s, nullable };
    case "string": return { kind: "string", schema: s, nullable };
    case "object":
      return { kind: s.properties ? "object" : "json", schema: s, nullable };
    case "array": {
      const item = deref(s.items || {}, root);
      if (Array.isArray(item.enum)) return { kind: "enum-list", schema: s, item, nullable };
      if (item.type === "object" && item.properties) return { kind: "object-list", schema: s, item, nullable };
      if (["string", "integer", "number"].includes(item.type) && !item.format) {
        return { kind: "scalar-list", schema: s, item, nullable };
      }
      return { kind: "json", schema: s, nullable };
    }
    default: return { kind: "json", schema: s, nullable };
  }
}

// Object variants told apart by a constant field (e.g. an ERP target's "kind": "http" | "file").
function union(schema, options, nullable) {
  const disc = schema.discriminator?.propertyName ||
    Object.keys(options[0]?.properties || {}).find((k) => options.every((o) => o.properties?.[k]?.const !== undefined));
  if (disc && options.every((o) => o.type === "object" && o.properties?.[disc]?.const !== undefined)) {
    return { kind: "union", schema, options, disc, nullable };
  }
  return { kind: "json", schema, nullable };
}

function clean(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

class FieldError extends Error {}

// Render an object schema as labelled inputs. Returns {element, value(), set(values)}.
function objectFields(schema, root, { path = "prop", values = {}, heading = null, hint = null } = {}) {
  const s = deref(schema, root);
  const required = new Set(s.required || []);
  const fields = Object.entries(s.properties || {}).map(([name, prop]) =>
    field(name, prop, root, { path: `${path}.${name}`, required: required.has(name), value: values[name] }));
  const element = heading
    ? h("fieldset", { class: "group" }, h("legend", {}, heading), hint, fields.map((f) => f.element))
    : h("div", { class: "fields" }, fields.map((f) => f.element));
  return {
    element,
    value() {
      const out = {};
      for (const f of fields) {
        const v = f.value();
        if (v !== undefined) out[f.name] = v;
      }
      return out;
    },
  };
}

function field(name, propSchema, root, { path, required, value }) {
  const info = classify(propSchema, root);
  const s = info.schema;
  const id = nextId(path.replace(/[^a-zA-Z0-9]+/g, "-"));
  // A $ref'd property has no title of its own; the referenced model's title ("ErpDataset") is no label.
  const label = titleOf({ title: propSchema.title }, name);
  const hintId = s.description ? `${id}-hint` : null;
  const hint = s.description ? h("p", { class: "hint", id: hintId }, plain(s.description)) : null;
  const initial = value !== undefined ? value : s.default;
  const labelEl = (forId) => h("label", { for: forId }, label, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null);
  const common = { id, name: path, "aria-describedby": hintId, "aria-required": required ? "true" : null };
  const wrap = (...children) => h("div", { class: `field kind-${info.kind}` }, children);

  if (info.kind === "boolean") {
    const input = h("input", { ...common, type: "checkbox", checked: Boolean(initial) });
    return { name, element: wrap(h("div", { class: "check" }, input, labelEl(id)), hint), value: () => input.checked };
  }
  if (info.kind === "enum" || info.kind === "const") {
    const options = info.kind === "const" ? [s.const] : s.enum;
    const select = h("select", common,
      (!required || initial === undefined) && info.kind === "enum" ? h("option", { value: "" }, "— choose —") : null,
      options.map((o) => h("option", { value: JSON.stringify(o), selected: o === initial }, humanize(o))));
    return {
      name, element: wrap(labelEl(id), select, hint),
      value: () => (select.value === "" ? undefined : JSON.parse(select.value)),
    };
  }
  if (info.kind === "enum-list") {
    const chosen = new Set(Array.isArray(initial) ? initial : []);
    const boxes = info.item.enum.map((o) => {
      const boxId = nextId(id);
      const box = h("input", { type: "checkbox", id: boxId, name: path, value: o, checked: chosen.has(o) });
      return { o, box, el: h("span", { class: "check" }, box, h("label", { for: boxId }, humanize(o))) };
    });
    return {
      name,
      element: wrap(h("fieldset", { class: "checks", "aria-describedby": hintId },
        h("legend", {}, label), boxes.map((b) => b.el)), hint),
      value: () => boxes.filter((b) => b.box.checked).map((b) => b.o),
    };
  }
  if (info.kind === "object") {
    const sub = objectFields(s, root, { path, values: initial || {}, heading: label, hint });
    return { name, element: wrap(sub.element), value: () => sub.value() };
  }
  if (info.kind === "object-list") return objectList(name, label, info, root, { path, initial, hint, required });
  if (info.kind === "union") {
    const { disc, options } = info;
    const constOf = (o) => o.properties[disc].const;
    const select = h("select", common, options.map((o) => h("option", { value: constOf(o),
      selected: initial?.[disc] === constOf(o) }, titleOf(o, null))));
    const slot = h("div", { "aria-live": "polite" });
    let sub = null;
    const render = () => {
      const variant = options.find((o) => constOf(o) === select.value) || options[0];
      const { [disc]: _omitted, ...properties } = variant.properties;
      const values = initial?.[disc] === select.value ? initial : {};
      sub = objectFields({ ...variant, properties, required: (variant.required || []).filter((r) => r !== disc) },
        root, { path, values });
      replace(slot, variant.description ? h("p", { class: "hint" }, plain(variant.description)) : null, sub.element);
    };
    select.addEventListener("change", render);
    render();
    return {
      name,
      element: wrap(h("fieldset", { class: "group" }, h("legend", {}, label, required ? " *" : ""), hint,
        h("div", { class: "field" }, h("label", { for: id }, humanize(disc)), select), slot)),
      value: () => ({ [disc]: select.value, ...sub.value() }),
    };
  }
  if (info.kind === "json") {
    const area = h("textarea", { ...common, rows: "4", class: "mono", spellcheck: "false",
      placeholder: "JSON, e.g. {} or []" }, initial !== undefined ? JSON.stringify(initial, null, 2) : "");
    const problem = h("p", { class: "field-problem", hidden: true });
    const parse = () => {
      const text = area.value.trim();
      problem.hidden = true;
      area.removeAttribute("aria-invalid");
      if (!text) return undefined;
      try {
        return JSON.parse(text);
      } catch (e) {
        problem.textContent = `${label} is not valid JSON: ${e.message}`;
        problem.hidden = false;
        area.setAttribute("aria-invalid", "true");
        throw new FieldError(problem.textContent);
      }
    };
    area.addEventListener("blur", () => { try { parse(); } catch { /* shown next to the field */ } });
    return { name, element: wrap(labelEl(id), area, problem, hint), value: parse };
  }
  // string, number, integer, decimal, scalar-list: one text-like input
  const attrs = { ...common };
  let initialText = initial === undefined || initial === null ? "" : String(initial);
  if (info.kind === "integer") Object.assign(attrs, { type: "number", step: "1", min: s.minimum, max: s.maximum });
  else if (info.kind === "number") Object.assign(attrs, { type: "number", step: "any", min: s.minimum, max: s.maximum });
  else if (info.kind === "decimal") Object.assign(attrs, { type: "text", inputmode: "decimal", placeholder: "0.00" });
  else if (info.kind === "scalar-list") {
    Object.assign(attrs, { type: "text", placeholder: "comma-separated values" });
    initialText = Array.isArray(initial) ? initial.join(", ") : initialText;
  } else if (s.format === "date") attrs.type = "date";
  else if (s.format === "email") attrs.type = "email";
  else if (s.format === "date-time") Object.assign(attrs, { type: "text", placeholder: "2026-01-31T00:00:00Z" });
  else attrs.type = "text";
  if (s.maxLength) attrs.maxlength = String(s.maxLength);
  const input = h("input", { ...attrs, value: initialText });
  const read = () => {
    const text = input.value.trim();
    if (!text) return info.nullable && required ? null : undefined;
    if (info.kind === "integer") {
      if (!/^-?\d+$/.test(text)) throw new FieldError(`${label} must be a whole number.`);
      return Number(text);
    }
    if (info.kind === "number") {
      if (Number.isNaN(Number(text))) throw new FieldError(`${label} must be a number.`);
      return Number(text);
    }
    if (info.kind === "decimal") {
      if (!/^-?\d+(\.\d+)?$/.test(text)) throw new FieldError(`${label} must be a decimal number such as 25.00.`);
      return text; // kept as a string: money is never a float
    }
    if (info.kind === "scalar-list") {
      const parts = text.split(",").map((p) => p.trim()).filter(Boolean);
      return info.item.type === "string" ? parts : parts.map(Number);
    }
    return text;
  };
  return { name, element: wrap(labelEl(id), input, hint), value: read };
}

// An array of objects (e.g. dunning tiers) as a repeatable group of fieldsets.
function objectList(name, label, info, root, { path, initial, hint, required }) {
  const itemTitle = titleOf(info.item, null);
  const list = h("div", { class: "repeat-items" });
  const entries = [];
  const renumber = () => entries.forEach((e, i) => {
    e.legend.textContent = `${itemTitle} ${i + 1}`;
    e.remove.textContent = `Remove ${itemTitle.toLowerCase()} ${i + 1}`;
    if (e.index !== i) {
      // Keep input names on their item's path (API errors point at fields by it).
      const from = `${path}.${e.index}.`;
      for (const el of e.element.querySelectorAll("[name]")) {
        if (el.name.startsWith(from)) el.name = `${path}.${i}.${el.name.slice(from.length)}`;
      }
      e.index = i;
    }
  });
  const add = (values = {}) => {
    const fields = objectFields(info.item, root, { path: `${path}.${entries.length}`, values });
    const entry = { fields, index: entries.length };
    entry.legend = h("legend", {});
    entry.remove = h("button", { type: "button", class: "secondary small", onclick: () => {
      entries.splice(entries.indexOf(entry), 1);
      entry.element.remove();
      renumber();
    } });
    entry.element = h("fieldset", { class: "repeat-item" }, entry.legend, fields.element, entry.remove);
    entries.push(entry);
    list.append(entry.element);
    renumber();
  };
  const start = Array.isArray(initial) ? initial : [];
  start.forEach((v) => add(v));
  const minItems = info.schema.minItems || (required && !start.length ? 1 : 0);
  while (entries.length < minItems) add();
  const addButton = h("button", { type: "button", class: "secondary small", onclick: () => {
    add();
    entries[entries.length - 1].element.querySelector("input, select, textarea")?.focus();
  } }, `Add ${itemTitle.toLowerCase()}`);
  const element = h("div", { class: "field kind-object-list" },
    h("fieldset", { class: "group" }, h("legend", {}, label, required ? " *" : ""), hint, list, addButton));
  return { name, element, value: () => (entries.length || required ? entries.map((e) => e.fields.value()) : undefined) };
}

// ---------------------------------------------------------------- router

const routes = [
  [/^\/setup\/?$/, viewSetup],
  [/^\/setup\/new$/, viewCreateJob],
  [/^\/jobs\/(\d+)$/, viewJob],
  [/^\/runs\/?$/, viewRuns],
  [/^\/runs\/new$/, viewCreateRun],
  [/^\/runs\/(\d+)$/, viewRun],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/setup";
  const [path, search = ""] = raw.split("?");
  return { path, params: new URLSearchParams(search) };
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  clearTimeout(timer);
  const token = ++viewToken;
  try {
    await whoAmI();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the login view took over
    replace(main, h("div", { class: "view" }, h("h1", {}, "Something went wrong"), notice(err.message, "error")));
    return;
  }
  if (token !== viewToken) return;
  renderSession();
  const { path, params } = parseHash();
  for (const link of document.querySelectorAll("[data-nav]")) {
    const section = path.startsWith("/runs") ? "runs" : "setup";
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, view] of routes) {
    const match = path.match(pattern);
    if (!match) continue;
    const viewEl = h("div", { class: "view" });
    const shown = flash;
    flash = null;
    try {
      await view(viewEl, { params, id: match[1] ? Number(match[1]) : null, token });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return; // the login view took over
      replace(viewEl, h("h1", {}, "Something went wrong"), notice(err.message || String(err), "error"));
    }
    if (token !== viewToken) return;
    if (shown) viewEl.prepend(notice(shown.text, shown.kind));
    replace(main, viewEl);
    // A new view: say where we are (title, focus) for keyboard and screen-reader users.
    document.title = `${viewEl.querySelector("h1")?.textContent.trim() || "Scheduler"} — Scheduler`;
    window.scrollTo(0, 0);
    main.focus({ preventScroll: true });
    return;
  }
  go("#/setup");
}

const stillHere = (token) => token === viewToken;

function schedule(token, fn) {
  clearTimeout(timer);
  timer = setTimeout(() => { if (stillHere(token)) fn(); }, REFRESH_MS);
}

// ---------------------------------------------------------------- login

// The session cookie is HTTP-only: the page knows it is logged in when GET /me answered.
function renderSession() {
  const slot = document.getElementById("session");
  if (!me) {
    replace(slot);
    return;
  }
  replace(slot, h("span", {}, `${me.name} (${me.role})`), h("button", { type: "button", class: "secondary small",
    onclick: async () => {
      const headers = { [CONFIG.csrf_header]: cookie(CONFIG.csrf_cookie) || "" };
      await fetch("/logout", { method: "POST", headers, credentials: "same-origin" }).catch(() => null);
      forgetSession();
      renderSession();
      route();
    } }, "Log out"));
}

// The login form's CSRF token: the cookie the page shell set, or a fresh one from GET /login.
async function loginCsrf() {
  const current = cookie(CONFIG.csrf_cookie);
  if (current) return current;
  const response = await fetch("/login", { credentials: "same-origin", headers: { Accept: "application/json" } });
  return (await response.json()).csrf_token;
}

function renderLogin(err) {
  clearTimeout(timer);
  ++viewToken;
  forgetSession();
  const box = errorBox();
  const input = h("input", { id: "api-key", name: "api_key", type: "password", autocomplete: "current-password",
    required: true });
  const form = h("form", { class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    clearError(box);
    const headers = { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" };
    try {
      const body = new URLSearchParams({ api_key: input.value.trim(), [CONFIG.csrf_field]: await loginCsrf() });
      const response = await fetch("/login", { method: "POST", body, headers, credentials: "same-origin" });
      if (!response.ok) {
        const type = response.headers.get("content-type") || "";
        const data = type.includes("json") ? await response.json().catch(() => null) : null;
        const error = new ApiError(response.status, data);
        if (response.status === 401 || response.status === 403) error.message = data?.message || "That API key was not accepted.";
        showError(box, error);
        return;
      }
      forgetSession();
      flash = { text: "Logged in.", kind: "info" };
      route();
    } catch {
      showError(box, new Error("Cannot reach the scheduler. Try again."));
    }
  } },
  h("h1", {}, "Log in"),
  h("p", {}, "The Scheduler needs an API key. Paste the key you were given (ask an admin for one, or run ",
    h("code", {}, "scheduler keys create"), ")."),
  err && ["invalid_api_key", "session_ended"].includes(err.code)
    ? notice("The key this page was using is no longer accepted. Log in with a current key.") : null,
  h("div", { class: "field" }, h("label", { for: "api-key" }, "API key"), input),
  box,
  h("div", { class: "buttons" }, h("button", { type: "submit" }, "Log in")));
  replace(main, h("div", { class: "view" }, form));
  renderSession();
  input.focus();
}

// ---------------------------------------------------------------- Setup

async function viewSetup(root, { token }) {
  const [types, jobs] = await Promise.all([jobTypes(), allJobs()]);
  if (!stillHere(token)) return;
  const rows = jobs.map((job) => h("tr", {},
    h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.name)),
    h("td", {}, types.get(job.job_type)?.label || job.job_type),
    h("td", {}, badge(job.status)),
    h("td", {}, job.cron
      ? [job.schedule_description || "", h("br", {}), h("code", {}, job.cron)]
      : h("span", { class: "muted" }, "Manual only")),
    h("td", {}, job.timezone),
    h("td", {}, fmtTime(job.next_fire_at))));
  append(root, 
    h("div", { class: "title-row" }, h("h1", {}, "Setup"),
      h("div", { class: "buttons" },
        may("create_job") ? h("a", { class: "button", href: "#/setup/new" }, "Create System Job") : null)),
    h("p", { class: "lead" }, "System jobs run on their cron schedule or on demand. A job cannot be edited once " +
      "created; to change one, open it and use “Create from this job”."),
    table("System jobs", ["Name", "Type", "Status", "Schedule", "Time zone", "Next fire"], rows,
      { empty: "No system jobs yet. Use “Create System Job” to add one." }));
}

function collectList(text) {
  return text.split(/[\s,;]+/).map((p) => p.trim()).filter(Boolean);
}

// A view the role may not use, reached by its address: say so instead of a form the API would refuse.
function refuseView(root, title, what) {
  append(root, h("h1", {}, title), notice(`Your role (${me.role}) cannot ${what}. Ask an admin for a key that can.`));
}

async function viewCreateJob(root, { params, token }) {
  if (!may("create_job")) return refuseView(root, "Create System Job", "create jobs");
  const types = await jobTypes();
  const fromId = params.get("from");
  const source = fromId ? await api("GET", `/jobs/${fromId}`) : null;
  if (!stillHere(token)) return;

  const box = errorBox();
  const customSlot = h("div", { id: "custom-fields", "aria-live": "polite" });
  let custom = null;

  const input = (id, attrs = {}) => h("input", { id, name: id, type: "text", ...attrs });
  const labelled = (id, text, control, hintText) => {
    if (hintText) control.setAttribute("aria-describedby", `${id}-hint`);
    return h("div", { class: "field" }, h("label", { for: id }, text), control,
      hintText ? h("p", { class: "hint", id: `${id}-hint` }, hintText) : null);
  };
  const select = (id, options, selected) => h("select", { id, name: id },
    options.map((o) => h("option", { value: o.value ?? o, selected: (o.value ?? o) === selected }, o.value ?? o)));
  const policyHint = (control, list) => {
    control.setAttribute("aria-describedby", `${control.id}-hint`);
    const hint = h("p", { class: "hint", id: `${control.id}-hint` });
    const update = (value) => { hint.textContent = list.find((p) => p.value === value)?.help || ""; };
    return { hint, update };
  };

  const name = input("name", { required: true, maxlength: "200", value: source ? `${source.name} (copy)` : "" });
  const type = h("select", { id: "job_type", name: "job_type", required: true, "aria-describedby": "job_type-hint" },
    h("option", { value: "" }, "— choose a type —"),
    [...types.values()].map((t) => h("option", { value: t.name, selected: source?.job_type === t.name }, t.label || t.name)));
  const typeHint = h("p", { class: "hint", id: "job_type-hint" }, "Choose the Type to display its custom fields.");
  const status = select("status", CONFIG.job_statuses, source?.status === "PAUSED" ? "PAUSED" : "ACTIVE");
  const description = h("textarea", { id: "description", name: "description", rows: "2", maxlength: "2000" },
    source?.description || "");
  const cron = input("cron", { class: "mono", placeholder: "0 2 * * *", value: source?.cron || "",
    "aria-describedby": "cron-hint", autocomplete: "off", spellcheck: "false" });
  const cronCheck = h("p", { class: "hint", id: "cron-check", "aria-live": "polite" });
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const timezone = input("timezone", { list: "tz-list", value: source?.timezone || "UTC", autocomplete: "off" });
  const emails = input("notify_emails", { value: (source?.notify_emails || []).join(", "),
    placeholder: "finance-ops@example.com, billing@example.com" });
  const notifyBoxes = CONFIG.notify_events.map((e) => h("input", { type: "checkbox", id: `notify-${e}`,
    name: "notify_on", value: e, checked: (source?.notify_on || []).includes(e) }));
  const manual = h("input", { type: "checkbox", id: "can_run_manual", name: "can_run_manual", checked: source ? source.can_run_manual : true });
  const review = h("input", { type: "checkbox", id: "requires_review", name: "requires_review", checked: Boolean(source?.requires_review) });
  const reviewEmpty = h("input", { type: "checkbox", id: "review_empty_previews", name: "review_empty_previews",
    checked: Boolean(source?.review_empty_previews) });
  const misfire = select("misfire_policy", CONFIG.misfire_policies, source?.misfire_policy || "ONCE");
  const misfireHelp = policyHint(misfire, CONFIG.misfire_policies);
  const overlap = select("overlap_policy", CONFIG.overlap_policies, source?.overlap_policy || "SKIP");
  const overlapHelp = policyHint(overlap, CONFIG.overlap_policies);
  const catchup = input("catchup_window", { type: "number", min: "0", step: "1", value: String(source?.catchup_window ?? 3600) });
  const maxCatchup = input("max_catchup_runs", { type: "number", min: "1", max: "1000", step: "1",
    value: String(source?.max_catchup_runs ?? 10) });
  const maxRuntime = input("max_runtime", { type: "number", min: "1", step: "1", value: source?.max_runtime ?? "" });

  misfire.addEventListener("change", () => misfireHelp.update(misfire.value));
  overlap.addEventListener("change", () => overlapHelp.update(overlap.value));
  misfireHelp.update(misfire.value);
  overlapHelp.update(overlap.value);

  const renderCustom = (values) => {
    const t = types.get(type.value);
    custom = null;
    if (!t) {
      replace(customSlot);
      typeHint.textContent = "Choose the Type to display its custom fields.";
      return;
    }
    typeHint.textContent = plain(t.description || "");
    review.disabled = !t.supports_preview;
    reviewEmpty.disabled = !t.supports_preview;
    const schema = t.job_properties || {};
    custom = objectFields(schema, schema, { path: "properties", values: values || {} });
    replace(customSlot, h("fieldset", { class: "group" },
      h("legend", {}, `${t.label || t.name} fields`),
      Object.keys(schema.properties || {}).length ? custom.element : h("p", { class: "muted" }, "This type has no custom fields.")));
  };
  type.addEventListener("change", () => {
    clearError(box);
    renderCustom();
  });
  if (source) renderCustom(source.properties);

  // The server validates cron for real; this only catches a wrong number of fields while typing.
  const checkCron = () => {
    const text = cron.value.trim();
    const count = text ? text.split(/\s+/).length : 0;
    if (!text) cronCheck.textContent = "No cron: the job runs only when started by hand.";
    else if (text.startsWith("@") || [5, 6, 7].includes(count)) {
      cronCheck.textContent = "The description and next fire times are shown once the job is created.";
    } else cronCheck.textContent = `A cron expression has 5 fields (or 6–7 with seconds and year); this one has ${count}.`;
  };
  cron.addEventListener("input", checkCron);
  checkCron();

  const submit = h("button", { type: "submit" }, "Create");
  const form = h("form", { class: "card", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    clearError(box);
    let body;
    try {
      if (!name.value.trim()) throw new FieldError("Enter a name for the job.");
      if (!type.value) throw new FieldError("Choose the job's Type.");
      body = {
        name: name.value.trim(),
        job_type: type.value,
        status: status.value,
        description: description.value.trim(),
        cron: cron.value.trim() || null,
        timezone: timezone.value.trim() || "UTC",
        properties: custom ? custom.value() : {},
        notify_emails: collectList(emails.value),
        notify_on: notifyBoxes.filter((b) => b.checked).map((b) => b.value),
        can_run_manual: manual.checked,
        requires_review: review.checked && !review.disabled,
        review_empty_previews: reviewEmpty.checked && !reviewEmpty.disabled,
        misfire_policy: misfire.value,
        catchup_window: Number(catchup.value || 0),
        max_catchup_runs: Number(maxCatchup.value || 1),
        overlap_policy: overlap.value,
        max_runtime: maxRuntime.value ? Number(maxRuntime.value) : null,
      };
    } catch (err) {
      showError(box, err);
      return;
    }
    submit.disabled = true;
    try {
      const job = await api("POST", "/jobs", { body });
      flash = { text: `Job “${job.name}” created.`, kind: "info" };
      go(`#/jobs/${job.id}`);
    } catch (err) {
      if (err.status !== 401) {
        showError(box, err);
        markFields(form, err, "properties");
      }
    } finally {
      submit.disabled = false;
    }
  } },
  h("fieldset", { class: "group" }, h("legend", {}, "Job"),
    labelled("name", "Name", name),
    h("div", { class: "field" }, h("label", { for: "job_type" }, "Type"), type, typeHint),
    labelled("status", "Status", status),
    labelled("description", "Description", description)),
  customSlot,
  h("fieldset", { class: "group" }, h("legend", {}, "Schedule"),
    h("div", { class: "field" }, h("label", { for: "cron" }, "Cron expression"), cron,
      h("p", { class: "hint", id: "cron-hint" }, "Five fields (minute hour day-of-month month day-of-week), a macro such " +
        "as @daily, or Quartz style with seconds; L, W, # and H (a value spread per job) are supported. Leave empty for a " +
        "manual-only job."),
      cronCheck),
    labelled("timezone", "Time zone", timezone, "An IANA name such as Europe/London; the schedule follows its " +
      "daylight-saving changes."),
    h("datalist", { id: "tz-list" }, zones.map((z) => h("option", { value: z })))),
  h("fieldset", { class: "group" }, h("legend", {}, "Runs"),
    h("div", { class: "field" }, h("div", { class: "check" }, manual, h("label", { for: "can_run_manual" },
      "Allow manual runs (Create Job Run)"))),
    h("div", { class: "field" }, h("div", { class: "check" }, review, h("label", { for: "requires_review" },
      "Requires review: every run stops at Preview until submitted"))),
    h("div", { class: "field" }, h("div", { class: "check" }, reviewEmpty, h("label", { for: "review_empty_previews" },
      "Review empty previews")), h("p", { class: "hint" }, "Otherwise a preview with nothing to apply completes at " +
      "once as “nothing to do”.")),
    h("div", { class: "field" }, h("label", { for: "misfire_policy" }, "Missed ticks"), misfire, misfireHelp.hint),
    labelled("catchup_window", "Catch-up window (seconds)", catchup),
    labelled("max_catchup_runs", "Most catch-up runs", maxCatchup),
    h("div", { class: "field" }, h("label", { for: "overlap_policy" }, "Overlapping runs"), overlap, overlapHelp.hint),
    labelled("max_runtime", "Maximum run time (seconds, optional)", maxRuntime)),
  h("fieldset", { class: "group" }, h("legend", {}, "Notifications"),
    labelled("notify_emails", "Email recipients", emails, "Separate addresses with commas."),
    h("fieldset", { class: "checks" }, h("legend", {}, "Notify on"),
      notifyBoxes.map((b) => h("span", { class: "check" }, b, h("label", { for: b.id }, humanize(b.value)))))),
  box,
  h("div", { class: "buttons" }, submit, h("a", { class: "button secondary", href: "#/setup" }, "Cancel")));

  append(root, 
    h("h1", {}, "Create System Job"),
    source ? notice(`Prefilled from job “${source.name}”. Change what you need; the original stays as it is.`) : null,
    form);
}

function jobActionsOf(job) {
  if (Array.isArray(job.actions)) return job.actions;
  return { ACTIVE: ["pause", "archive"], PAUSED: ["resume", "archive"] }[job.status] || [];
}

async function viewJob(root, { id, token }) {
  const [types, job] = await Promise.all([jobTypes(), api("GET", `/jobs/${id}`)]);
  let fires = null;
  let firesError = null;
  if (job.cron) {
    try {
      fires = await api("GET", `/jobs/${id}/next-fires`, { params: { count: 10 } });
    } catch (err) {
      if (err.status === 401) throw err;
      firesError = err;
    }
  }
  if (!stillHere(token)) return;
  const type = types.get(job.job_type);
  const box = errorBox();
  const confirmSlot = h("div", {});
  const act = async (action) => {
    clearError(box);
    try {
      await api("POST", `/jobs/${id}/${action}`);
      flash = { text: `Job ${action === "pause" ? "paused" : action === "resume" ? "resumed" : "archived"}.`, kind: "info" };
      route();
    } catch (err) {
      if (err.status !== 401) showError(box, err);
    }
  };
  const actionButtons = jobActionsOf(job).filter(() => may("change_job")).map((action) => h("button", {
    type: "button", class: action === "archive" ? "danger" : "secondary",
    onclick: () => (action === "archive"
      ? confirmInline(confirmSlot, ACTION_CONFIRM.archive, "Confirm archive", () => act(action))
      : act(action)),
  }, humanize(action)));

  const propsTable = Object.keys(job.properties || {}).length
    ? propertiesView(job.properties)
    : h("span", { class: "muted" }, "None");

  let firesSection;
  if (!job.cron) firesSection = h("p", { class: "muted" }, "Manual only: this job has no schedule.");
  else if (firesError) firesSection = notice(firesError.message, "error");
  else {
    let previous = null;
    const rows = (fires.fires || []).map((f, i) => {
      const offset = (f.local || "").slice(-6);
      const dst = f.dst_change ?? (previous !== null && offset !== previous);
      previous = offset;
      return h("tr", { class: dst ? "dst" : null },
        h("td", {}, String(i + 1)),
        h("td", {}, fmtTime(f.utc, { zone: false })),
        h("td", { class: "nowrap" }, f.local ? `${f.local.slice(0, 19).replace("T", " ")} (${offset})` : "—"),
        h("td", {}, dst ? h("strong", { class: "dst-flag" }, "Clock changed") : ""));
    });
    firesSection = [
      h("p", {}, h("strong", {}, fires.description || job.schedule_description || ""),
        " ", h("span", { class: "muted" }, `(${job.timezone})`)),
      job.status !== "ACTIVE" ? notice(`The job is ${job.status.toLowerCase()}: these times fire only once it is active.`) : null,
      h("div", { class: "fires" }, table("!Next fire times", ["#", "UTC", `Local (${job.timezone})`, "DST"], rows,
        { empty: "This schedule fires no more." })),
    ];
  }

  append(root, 
    h("div", { class: "title-row" },
      h("h1", {}, job.name, " ", badge(job.status)),
      h("div", { class: "buttons" },
        actionButtons,
        may("create_job")
          ? h("a", { class: "button secondary", href: `#/setup/new?from=${job.id}` }, "Create from this job") : null,
        job.status === "ACTIVE" && job.can_run_manual && may("create_run")
          ? h("a", { class: "button", href: `#/runs/new?job=${job.id}` }, "Create Job Run") : null,
        h("a", { class: "button secondary", href: `#/runs?job=${job.id}` }, "View runs"))),
    confirmSlot, box,
    awaitingReview(job.awaiting_review),
    h("p", { class: "lead" }, "A job cannot be edited once created. To change it, use “Create from this job” and " +
      "archive this one."),
    h("div", { class: "columns halves" },
      h("section", { class: "card", "aria-labelledby": "def-h" }, h("h2", { id: "def-h" }, "Definition"),
        definitionList([
          ["Type", type?.label || job.job_type],
          ["Description", job.description || "—"],
          ["Schedule", job.cron ? [h("code", {}, job.cron), " — ", job.schedule_description || ""] : "Manual only"],
          ...(job.cron_expanded && job.cron_expanded !== job.cron
            ? [["Spread by H", [h("code", {}, job.cron_expanded), " (each H field hashed from the job's name)"]]] : []),
          ["Time zone", job.timezone],
          ["Properties", propsTable],
          ["Manual runs", job.can_run_manual ? "Allowed" : "Not allowed"],
          ["Requires review", fmtValue(job.requires_review)],
          ["Review empty previews", fmtValue(job.review_empty_previews)],
          ["Missed ticks", `${job.misfire_policy} (window ${job.catchup_window} s, at most ${job.max_catchup_runs} runs)`],
          ["Overlapping runs", job.overlap_policy],
          ["Maximum run time", job.max_runtime ? `${job.max_runtime} s` : "—"],
          ["Email recipients", (job.notify_emails || []).join(", ") || "—"],
          ["Notify on", (job.notify_on || []).map(humanize).join(", ") || "—"],
          ["Created", [fmtTime(job.created_at), ` by ${job.created_by}`]],
          ["Next fire", fmtTime(job.next_fire_at)],
          ["Last scheduled tick", fmtTime(job.last_scheduled_for)],
        ])),
      h("section", { class: "card", "aria-labelledby": "fires-h" }, h("h2", { id: "fires-h" }, "Next fire times"),
        firesSection)),
    h("section", { class: "card", "aria-labelledby": "job-events-h" }, h("h2", { id: "job-events-h" }, "Status history"),
      table("!Status history", ["At", "From", "To", "Actor", "Note"], (job.events || []).map((e) => h("tr", {},
        h("td", {}, fmtTime(e.at)),
        h("td", {}, e.from_status ? badge(e.from_status) : "—"),
        h("td", {}, badge(e.to_status)),
        h("td", {}, e.actor),
        h("td", {}, e.note || ""))), { empty: "No status changes recorded." })));
}

// A summary or detail field: its amounts as the API formatted them when it is money, else the value.
function moneyOr(amounts, field, value, show = propertiesView) {
  const mine = (amounts || []).filter((a) => a.field === field);
  if (!mine.length) return show(value);
  if (mine.every((a) => a.name === field)) return h("span", { class: "amount" }, mine.map((a) => a.display).join(" + "));
  return amountsOf(mine); // named totals (a summary's money): one line each
}

const summaryValue = (v) => (Number.isInteger(v) ? count(v) : propertiesView(v));

// A preview of the job waiting for review holds up its scheduled ticks: say which run and how many.
function awaitingReview(block) {
  if (!block) return null;
  const skipped = block.skipped_ticks
    ? [` It has made this job skip ${count(block.skipped_ticks)} scheduled tick${block.skipped_ticks === 1 ? "" : "s"}`,
      block.first_skipped ? [" (", fmtTime(block.first_skipped), " to ", fmtTime(block.last_skipped), ")"] : null, "."]
    : " No scheduled tick has been skipped yet.";
  return h("div", { class: "notice", role: "status", id: "awaiting-review" },
    h("a", { href: `#/runs/${block.run_id}` }, `Run ${block.run_id}`), " awaits review",
    block.awaiting_since ? [" since ", fmtTime(block.awaiting_since)] : null, ": submit or delete it.", skipped);
}

// Job or run properties as a readable nested list (arrays of objects become small tables).
function propertiesView(value) {
  if (Array.isArray(value)) {
    if (value.length && value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
      const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
      return h("div", { class: "scroll-x" }, h("table", { class: "compact" },
        h("thead", {}, h("tr", {}, keys.map((k) => h("th", { scope: "col" }, humanize(k))))),
        h("tbody", {}, value.map((v) => h("tr", {}, keys.map((k) => h("td", {}, fmtValue(v[k]))))))));
    }
    return value.map(fmtValue).join(", ") || "—";
  }
  if (value && typeof value === "object") {
    return definitionList(Object.entries(value).map(([k, v]) => [humanize(k), propertiesView(v)]));
  }
  return fmtValue(value);
}

// ---------------------------------------------------------------- Run Manager

const RUN_FILTERS = ["status", "type", "job", "from", "to"];

function runsState(params) {
  const state = Object.fromEntries(RUN_FILTERS.map((k) => [k, params.get(k) || ""]));
  return { ...state, statuses: state.status.split(",").filter(Boolean) };
}

function runsHash(state) {
  const search = new URLSearchParams();
  const values = { ...state, status: state.statuses.join(",") };
  for (const key of RUN_FILTERS) if (values[key]) search.set(key, values[key]);
  const text = search.toString();
  return `#/runs${text ? `?${text}` : ""}`;
}

// The date range is of creation, in UTC days: "to" includes its whole day.
function nextDay(day) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

function runFilters(state) {
  return {
    status: state.statuses.length ? state.statuses.join(",") : null, job_id: state.job || null,
    job_type: state.type || null, created_from: state.from ? `${state.from}T00:00:00Z` : null,
    created_to: state.to ? `${nextDay(state.to)}T00:00:00Z` : null,
  };
}

// Item counts of a run: what finished runs recorded per outcome.
function itemCounts(counts) {
  const shown = CONFIG.item_outcomes.filter((o) => (counts || {})[o]);
  if (!shown.length) return h("span", { class: "muted" }, "—");
  return h("span", { class: "counts" }, shown.map((o) =>
    h("span", { class: `badge outcome-${o}`, dataset: { outcome: o } }, `${count(counts[o])} ${o}`)));
}

// The list shows a run's totals per currency (its summary's money) when it has them, else every amount.
const keyAmounts = (list) => (list.some((a) => a.field === "money") ? list.filter((a) => a.field === "money") : list);

// One line on how a run ended or what went wrong.
const outcomeLine = (run) => (typeof run.outcome === "string" && run.outcome) || "";

async function viewRuns(root, { params, token }) {
  const state = runsState(params);
  const [types, jobs] = await Promise.all([jobTypes(), allJobs({ include_archived: true })]);
  if (!stillHere(token)) return;
  const jobsById = new Map(jobs.map((j) => [String(j.id), j]));
  const cursors = [null]; // cursors[i] opens page i
  let page = 0;
  const goWith = (change) => go(runsHash({ ...state, ...change }));

  const chips = h("div", { class: "chips", role: "group", "aria-label": "Filter by status" },
    h("button", { type: "button", class: "chip", "aria-pressed": String(!state.statuses.length),
      onclick: () => goWith({ statuses: [] }) }, "All"),
    CONFIG.run_statuses.map((s) => {
      const on = state.statuses.includes(s.value);
      return h("button", { type: "button", class: "chip", "aria-pressed": String(on), title: s.help,
        dataset: { status: s.value },
        onclick: () => goWith({ statuses: on ? state.statuses.filter((x) => x !== s.value) : [...state.statuses, s.value] }) },
      humanize(s.value.toLowerCase()));
    }));
  const typeFilter = h("select", { id: "type-filter", onchange: () => goWith({ type: typeFilter.value }) },
    h("option", { value: "" }, "All types"),
    [...types.values()].map((t) => h("option", { value: t.name, selected: t.name === state.type }, t.label)));
  const jobFilter = h("select", { id: "job-filter", onchange: () => goWith({ job: jobFilter.value }) },
    h("option", { value: "" }, "All jobs"),
    jobs.filter((j) => !state.type || j.job_type === state.type).map((j) =>
      h("option", { value: String(j.id), selected: String(j.id) === state.job },
        `${j.name}${j.status === "ARCHIVED" ? " (archived)" : ""}`)));
  const dateInput = (id, key) => {
    const input = h("input", { id, type: "date", value: state[key],
      onchange: () => goWith({ [key]: input.value }) });
    return input;
  };
  const csv = h("a", { class: "button secondary", id: "csv-export", download: "",
    href: `${API}/runs${query({ ...runFilters(state), format: "csv" })}` }, "Export CSV");
  const tableSlot = h("div", { "aria-live": "polite", "aria-busy": "false" });
  const pager = h("div", { class: "pager" });
  const refreshNote = h("p", { class: "hint", role: "status", id: "refresh-note" });
  const box = errorBox();

  const row = (run) => {
    const job = jobsById.get(String(run.job_id));
    const line = outcomeLine(run);
    return h("tr", { dataset: { runId: String(run.id), status: run.status } },
      h("td", { dataset: { label: "Run" } }, h("a", { href: `#/runs/${run.id}` }, `Run ${run.id}`),
        h("div", {}, h("a", { href: `#/jobs/${run.job_id}` }, run.job_name || job?.name || `Job ${run.job_id}`)),
        h("div", { class: "muted" }, types.get(run.job_type)?.label || run.job_type)),
      h("td", { dataset: { label: "Status" } }, badge(run.status),
        h("div", { class: "muted" }, humanize(String(run.trigger).toLowerCase()))),
      h("td", { dataset: { label: "Times" }, class: "times" },
        h("div", {}, h("span", { class: "muted" }, "Created "), fmtTime(run.created_at, { zone: false })),
        run.finished_at ? h("div", {}, h("span", { class: "muted" }, "Finished "), fmtTime(run.finished_at, { zone: false }))
          : run.started_at ? h("div", {}, h("span", { class: "muted" }, "Started "), fmtTime(run.started_at, { zone: false }))
            : null),
      h("td", { dataset: { label: "Progress" } }, progressBar(run.progress)),
      h("td", { dataset: { label: "Items" } }, itemCounts(run.item_counts || (run.summary || {}).items)),
      h("td", { dataset: { label: "Amounts" }, class: "amounts" },
        run.amounts?.length ? amountsOf(keyAmounts(run.amounts)) : h("span", { class: "muted" }, "—")),
      h("td", { dataset: { label: "Outcome" }, class: "outcome-line" },
        line ? h("div", {}, line) : null,
        run.summary?.review_blocked?.ticks ? h("div", { class: "error-line" },
          `holding up its job: ${count(run.summary.review_blocked.ticks)} scheduled ticks skipped`) : null,
        run.error && !line.includes(run.error) ? h("div", { class: "error-line", title: run.error }, run.error) : null,
        line || run.error ? null : h("span", { class: "muted" }, "—")));
  };

  // The list follows new and progressing runs; a hidden tab asks again once it is shown.
  let lastShown = null;
  const follow = () => schedule(token, function poll() {
    if (document.hidden) schedule(token, poll);
    else load(true);
  });
  const load = async (quiet) => {
    if (!quiet) tableSlot.setAttribute("aria-busy", "true");
    let data;
    try {
      data = await api("GET", "/runs", { params: { ...runFilters(state), limit: 25, cursor: cursors[page] } });
    } catch (err) {
      if (err.status !== 401 && stillHere(token)) showError(box, err);
      if (stillHere(token)) schedule(token, () => load(true));
      return;
    }
    if (!stillHere(token)) return;
    clearError(box);
    const runs = itemsOf(data);
    cursors[page + 1] = data.next_cursor || null;
    // A refresh that brings nothing new leaves the table as it is (a selection, focus and screen readers stay put).
    const shown = JSON.stringify([page, data]);
    if (quiet && shown === lastShown) {
      follow();
      return;
    }
    lastShown = shown;
    replace(tableSlot, table("!Job runs (times in UTC)", ["Run", "Status", "Times (UTC)", "Progress", "Items",
      "Amounts", "Outcome"], runs.map(row), { empty: "No runs match these filters." }));
    tableSlot.querySelector("table")?.classList.add("runs");
    tableSlot.setAttribute("aria-busy", "false");
    replace(pager,
      h("button", { type: "button", class: "secondary", disabled: page === 0,
        onclick: () => { page -= 1; load(); } }, "Newer runs"),
      h("span", { class: "muted" }, `Page ${page + 1}`),
      h("button", { type: "button", class: "secondary", disabled: !data.next_cursor,
        onclick: () => { page += 1; load(); } }, "Older runs"));
    const active = runs.some((r) => IN_PROGRESS.has(r.status));
    refreshNote.textContent = active ? "Runs are in progress: this list updates itself every few seconds." :
      "This list updates itself every few seconds.";
    follow();
  };
  await load();

  append(root,
    h("div", { class: "title-row" }, h("h1", {}, "Run Manager"),
      h("div", { class: "buttons" },
        may("create_run") ? h("a", { class: "button", href: "#/runs/new" }, "Create Job Run") : null, csv)),
    h("div", { class: "filters" }, chips,
      h("div", { class: "filter-fields" },
        h("div", { class: "field inline" }, h("label", { for: "type-filter" }, "Type"), typeFilter),
        h("div", { class: "field inline" }, h("label", { for: "job-filter" }, "Job"), jobFilter),
        h("div", { class: "field inline" }, h("label", { for: "from-filter" }, "Created from"),
          dateInput("from-filter", "from")),
        h("div", { class: "field inline" }, h("label", { for: "to-filter" }, "to"), dateInput("to-filter", "to")),
        RUN_FILTERS.some((k) => k !== "status" && state[k])
          ? h("a", { class: "button secondary small", href: runsHash({ statuses: state.statuses }) }, "Clear filters")
          : null)),
    box, refreshNote, tableSlot, pager);
}

async function viewCreateRun(root, { params, token }) {
  if (!may("create_run")) return refuseView(root, "Create Job Run", "create runs");
  const [types, jobs] = await Promise.all([jobTypes(), allJobs()]);
  if (!stillHere(token)) return;
  const runnable = jobs.filter((j) => j.status === "ACTIVE" && j.can_run_manual);
  append(root, h("h1", {}, "Create Job Run"));
  if (!runnable.length) {
    append(root, notice("No active job allows manual runs. Create one in Setup, or resume a paused job."));
    return;
  }
  const box = errorBox();
  const wanted = params.get("job");
  const jobSelect = h("select", { id: "run-job", name: "job_id", required: true },
    h("option", { value: "" }, "— choose a job —"),
    runnable.map((j) => h("option", { value: String(j.id), selected: String(j.id) === wanted },
      `${j.name} (${types.get(j.job_type)?.label || j.job_type})`)));
  const preview = h("input", { type: "checkbox", id: "run-preview", name: "preview" });
  const previewNote = h("p", { class: "hint", id: "run-preview-hint" });
  const propsSlot = h("div", { "aria-live": "polite" });
  let props = null;
  // One key per form: a double click or a retried request creates one run, not two.
  const idempotencyKey = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;

  const renderJob = () => {
    const job = runnable.find((j) => String(j.id) === jobSelect.value);
    props = null;
    if (!job) {
      replace(propsSlot);
      previewNote.textContent = "";
      return;
    }
    const t = types.get(job.job_type) || {};
    preview.disabled = !t.supports_preview;
    previewNote.textContent = !t.supports_preview ? "This job type does not support preview."
      : job.requires_review ? "This job requires review: the run stops at Preview either way."
        : "Stop at Preview so the staged effects can be reviewed before they are applied.";
    const schema = t.run_properties || {};
    if (!Object.keys(schema.properties || {}).length) {
      replace(propsSlot, h("p", { class: "muted" }, "This job type takes no run properties."));
      return;
    }
    props = objectFields(schema, schema, { path: "run_properties" });
    replace(propsSlot, h("fieldset", { class: "group" }, h("legend", {}, "Run properties"), props.element));
  };
  jobSelect.addEventListener("change", renderJob);
  renderJob();

  const submit = h("button", { type: "submit" }, "Create Job Run");
  const form = h("form", { class: "card", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    clearError(box);
    let body;
    try {
      if (!jobSelect.value) throw new FieldError("Choose the job to run.");
      body = { job_id: Number(jobSelect.value), preview: preview.checked && !preview.disabled,
        run_properties: props ? props.value() : {} };
    } catch (err) {
      showError(box, err);
      return;
    }
    submit.disabled = true;
    try {
      const run = await api("POST", "/runs", { body, headers: { "Idempotency-Key": idempotencyKey } });
      flash = { text: `Run ${run.id} created.`, kind: "info" };
      go(`#/runs/${run.id}`);
    } catch (err) {
      if (err.status !== 401) {
        showError(box, err);
        markFields(form, err, "run_properties");
      }
    } finally {
      submit.disabled = false;
    }
  } },
  h("div", { class: "field" }, h("label", { for: "run-job" }, "Job"), jobSelect),
  h("div", { class: "field" }, h("div", { class: "check" }, preview,
    h("label", { for: "run-preview" }, "Preview first")), previewNote),
  propsSlot, box,
  h("div", { class: "buttons" }, submit, h("a", { class: "button secondary", href: "#/runs" }, "Cancel")));
  append(root, form);
}

async function viewRun(root, { id, token }) {
  const types = await jobTypes();
  const box = errorBox();
  const confirmSlot = h("div", {});
  const header = h("div", { class: "title-row" });
  const body = h("div", {});
  const itemsSection = h("section", { class: "card", "aria-labelledby": "items-h" });
  const eventsSection = h("section", { class: "card", "aria-labelledby": "events-h" });
  const itemsState = { outcome: "", after: [null], page: 0 };
  let run = null;

  const act = async (action) => {
    clearError(box);
    try {
      const answer = await api("POST", `/runs/${id}/${action}`);
      if (action === "retry" && answer && answer.id && answer.id !== id) {
        flash = { text: `Retry run ${answer.id} created for run ${id}.`, kind: "info" };
        go(`#/runs/${answer.id}`);
        return;
      }
      await load();
    } catch (err) {
      if (err.status !== 401) showError(box, err);
    }
  };

  const loadItems = async () => {
    let data;
    try {
      data = await api("GET", `/runs/${id}/items`, {
        params: { outcome: itemsState.outcome || null, limit: 50, cursor: itemsState.after[itemsState.page] },
      });
    } catch (err) {
      if (err.status === 401) throw err;
      replace(itemsSection, h("h2", { id: "items-h" }, "Details"), notice(err.message, "error"));
      return;
    }
    if (!stillHere(token)) return;
    const items = itemsOf(data);
    itemsState.after[itemsState.page + 1] = data.next_cursor || null;
    const keys = [...new Set(items.flatMap((i) => Object.keys(i.detail || {})))];
    const outcomeSelect = h("select", { id: "item-outcome", onchange: () => {
      itemsState.outcome = outcomeSelect.value;
      itemsState.after = [null];
      itemsState.page = 0;
      loadItems();
    } }, h("option", { value: "" }, "All outcomes"),
    CONFIG.item_outcomes.map((o) => h("option", { value: o, selected: o === itemsState.outcome },
      `${humanize(o)} (${(run.item_counts || {})[o] || 0})`)));
    const exportItems = h("a", { class: "button secondary small", id: "items-csv", download: "",
      href: `${API}/runs/${id}/items${query({ outcome: itemsState.outcome || null, format: "csv" })}` },
    itemsState.outcome ? `Export ${itemsState.outcome} items (CSV)` : "Export items (CSV)");
    replace(itemsSection,
      h("h2", { id: "items-h" }, "Details"),
      h("p", { class: "hint" }, `What this ${types.get(run.job_type)?.label || run.job_type} run staged and what ` +
        "became of each item."),
      h("div", { class: "filters" },
        h("div", { class: "field inline" }, h("label", { for: "item-outcome" }, "Outcome"), outcomeSelect), exportItems),
      table("!Run items", ["Key", "Outcome", "Applied", ...keys.map(humanize)], items.map((item) => h("tr", {},
        h("td", { class: "mono" }, item.key ?? item.item_key),
        h("td", {}, h("span", { class: `badge outcome-${item.outcome}` }, item.outcome)),
        h("td", {}, fmtTime(item.applied_at)),
        keys.map((k) => h("td", {}, moneyOr(item.amounts, k, (item.detail || {})[k], fmtValue))))),
      { empty: itemsState.outcome ? `No items with outcome “${itemsState.outcome}”.` : "No items yet." }),
      h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", disabled: itemsState.page === 0,
          onclick: () => { itemsState.page -= 1; loadItems(); } }, "Previous items"),
        h("button", { type: "button", class: "secondary", disabled: !data.next_cursor,
          onclick: () => { itemsState.page += 1; loadItems(); } }, "More items")));
  };

  const load = async () => {
    const answer = await api("GET", `/runs/${id}`);
    if (!stillHere(token)) return;
    run = answer;
    const actions = may("act_on_run") ? run.actions || [] : [];
    const typeLabel = types.get(run.job_type)?.label || run.job_type;
    replace(header, 
      h("h1", {}, `Run ${run.id} `, badge(run.status)),
      h("div", { class: "buttons", id: "run-actions" },
        actions.map((action) => h("button", {
          type: "button", class: action === "delete" || action === "cancel" ? "danger" : null,
          dataset: { action },
          onclick: () => (ACTION_CONFIRM[action]
            ? confirmInline(confirmSlot, ACTION_CONFIRM[action], `Confirm ${ACTION_LABELS[action].toLowerCase()}`, () => act(action))
            : act(action)),
        }, ACTION_LABELS[action] || humanize(action))),
        h("a", { class: "button secondary", href: "#/runs" }, "Back to Run Manager")));
    const events = run.events || [];
    const summary = run.summary || {};
    replace(body, 
      h("p", { class: "lead" }, STATUS_HELP[run.status] || "",
        actions.length ? "" : (run.actions || []).length ? ` Your role (${me.role}) cannot act on runs.`
          : " No actions are available at this status."),
      run.error ? notice(`Error: ${run.error}`, "error") : null,
      run.retry_unavailable ? notice(`No retry is offered: ${run.retry_unavailable}`) : null,
      h("div", { class: "columns" },
        h("section", { class: "card", "aria-labelledby": "run-h" }, h("h2", { id: "run-h" }, "Run"),
          definitionList([
            ["Job", h("a", { href: `#/jobs/${run.job_id}` }, run.job_name || `Job ${run.job_id}`)],
            ["Type", typeLabel],
            ["Trigger", humanize(String(run.trigger).toLowerCase())],
            ["Status", badge(run.status)],
            ["Progress", progressBar(run.progress)],
            outcomeLine(run) ? ["Outcome", outcomeLine(run)] : null,
            ["Preview first", fmtValue(run.preview)],
            ["Scheduled for", fmtTime(run.scheduled_for)],
            ["Created", [fmtTime(run.created_at), run.created_by ? ` by ${run.created_by}` : ""]],
            ["Sent to workers", fmtTime(run.enqueued_at)],
            ["Started", fmtTime(run.started_at)],
            ["Finished", fmtTime(run.finished_at)],
            run.worker ? ["Worker", run.worker] : null,
            run.attempt ? ["Attempt", String(run.attempt)] : null,
            run.retry_of ? ["Retry of", h("a", { href: `#/runs/${run.retry_of}` }, `Run ${run.retry_of}`)] : null,
            ["Run properties", Object.keys(run.run_properties || {}).length ? propertiesView(run.run_properties) : "—"],
          ])),
        h("section", { class: "card", "aria-labelledby": "summary-h" }, h("h2", { id: "summary-h" }, "Summary"),
          Object.keys(summary).length
            ? definitionList(Object.entries(summary).map(([k, v]) => [humanize(k), moneyOr(run.amounts, k, v, summaryValue)]))
            : h("p", { class: "muted" }, "No summary yet: it is written as the run progresses."))));
    replace(eventsSection, h("h2", { id: "events-h" }, "Audit trail"),
        table("!Audit trail", ["At", "From", "To", "Actor", "Note"], events.map((e) => h("tr", {},
          h("td", {}, fmtTime(e.at)),
          h("td", {}, e.from_status ? badge(e.from_status) : "—"),
          h("td", {}, badge(e.to_status)),
          h("td", {}, e.actor),
          h("td", {}, e.note || ""))), { empty: "No events recorded." }));
    await loadItems();
    if (IN_PROGRESS.has(run.status)) schedule(token, () => load().catch(() => {}));
  };
  await load();
  append(root, header, confirmSlot, box, body, itemsSection, eventsSection);
}

// ---------------------------------------------------------------- start

window.addEventListener("hashchange", route);
route();
