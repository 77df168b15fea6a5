/* The Cerebelum console: plain JavaScript over the JSON API (docs/http.md).
 * Every value from the server goes into the page through textContent or
 * attributes, never as HTML. */
"use strict";

const main = document.getElementById("main");
const statusBox = document.getElementById("status");
let streams = [];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
}
const time = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").replace("Z", "") : "");
const pretty = (v) => JSON.stringify(v, null, 2);
const stat = (s) => el("span", { class: "st st-" + (s || "none") }, s || "-");
function say(msg) { statusBox.textContent = msg || ""; }

function closeStreams() { for (const s of streams) s.close(); streams = []; }
function stream(path, handlers) {
  const es = new EventSource(path);
  for (const [name, fn] of Object.entries(handlers)) es.addEventListener(name, (m) => fn(JSON.parse(m.data)));
  streams.push(es);
  return es;
}

async function api(method, path, body) {
  const r = await fetch(path, { method, credentials: "same-origin",
    headers: body !== undefined ? { "Content-Type": "application/json" } : {},
    body: body !== undefined ? JSON.stringify(body) : undefined });
  const j = await r.json().catch(() => null);
  if (r.status === 401) { login(); throw new Error("a token is required"); }
  if (!r.ok) throw new Error((j && j.error && j.error.message) || ("HTTP " + r.status));
  return j;
}

function login() {
  const d = document.getElementById("login");
  if (!d.open) d.showModal();
}
document.getElementById("login-form").addEventListener("submit", () => {
  const t = document.getElementById("token").value;
  document.cookie = "cerebelum_token=" + encodeURIComponent(t) + "; path=/; SameSite=Strict";
  route();
});
document.getElementById("logout").addEventListener("click", () => {
  document.cookie = "cerebelum_token=; path=/; max-age=0";
  login();
});

/* ---- executions list ---- */
const STATUSES = ["", "running", "sleeping", "awaiting_approval", "awaiting_signal", "awaiting_child",
                  "completed", "failed", "cancelled"];

async function listPage(q) {
  const cursors = (q.get("trail") || "").split(",").filter(Boolean);
  const params = new URLSearchParams();
  for (const k of ["status", "blueprint"]) if (q.get(k)) params.set(k, q.get(k));
  params.set("limit", q.get("limit") || "25");
  if (cursors.length) params.set("after", cursors[cursors.length - 1]);
  const j = await api("GET", "/api/v1/executions?" + params);
  const search = q.get("q") || "";
  const rows = j.executions.filter((x) => !search || x.execution_id.startsWith(search) || x.idempotency_key === search);
  const tbody = el("tbody", {}, rows.map(row));
  function row(x) {
    return el("tr", { "data-id": x.execution_id },
      el("td", {}, el("a", { href: "#/execution/" + x.execution_id }, el("code", {}, x.execution_id))),
      el("td", {}, x.blueprint), el("td", {}, stat(x.status)), el("td", {}, time(x.started_at_ms)),
      el("td", {}, time(x.updated_at_ms)), el("td", {}, x.idempotency_key || ""));
  }
  const form = el("form", { class: "filters", role: "search", onsubmit: (e) => {
      e.preventDefault();
      const f = new FormData(e.target), n = new URLSearchParams();
      const s = (f.get("q") || "").trim();
      if (/^[0-9a-f-]{36}$/i.test(s)) { location.hash = "#/execution/" + s; return; }
      for (const k of ["status", "blueprint", "q"]) if (f.get(k)) n.set(k, f.get(k));
      location.hash = "#/executions?" + n;
    } },
    el("label", {}, "Status", el("select", { name: "status" },
      STATUSES.map((s) => el("option", { value: s, selected: s === (q.get("status") || "") }, s || "any")))),
    el("label", {}, "Blueprint", el("input", { name: "blueprint", value: q.get("blueprint") || "" })),
    el("label", {}, "Id or idempotency key", el("input", { name: "q", value: search })),
    el("button", { type: "submit" }, "Filter"));
  const pager = el("div", { class: "pager" },
    cursors.length ? el("button", { type: "button", onclick: () => { cursors.pop(); go(cursors); } }, "Previous page") : null,
    j.next_after ? el("button", { type: "button", onclick: () => go(cursors.concat([j.next_after])) }, "Next page") : null);
  function go(trail) {
    const n = new URLSearchParams(q);
    if (trail.length) n.set("trail", trail.join(",")); else n.delete("trail");
    location.hash = "#/executions?" + n;
  }
  main.replaceChildren(...[el("h2", {}, "Executions"), form,
    el("table", {}, el("thead", {}, el("tr", {}, ["Id", "Blueprint", "Status", "Started", "Updated", "Key"].map((h) => el("th", { scope: "col" }, h)))), tbody),
    pager].filter(Boolean));
  if (!cursors.length) {
    const sp = new URLSearchParams();
    for (const k of ["status", "blueprint"]) if (q.get(k)) sp.set(k, q.get(k));
    stream("/api/v1/stream/executions?" + sp, { execution: (x) => {
      const old = tbody.querySelector('tr[data-id="' + x.execution_id + '"]');
      if (old) old.replaceWith(row(x)); else tbody.prepend(row(x));
    } });
  }
}

/* ---- one execution ---- */
function dag(bp, steps) {
  const depth = {}, order = bp.steps.map((s) => s.name);
  const deps = Object.fromEntries(bp.steps.map((s) => [s.name, s.depends_on || []]));
  const d = (n, seen = new Set()) => {
    if (depth[n] !== undefined) return depth[n];
    if (seen.has(n)) return 0;
    seen.add(n);
    return (depth[n] = deps[n].length ? 1 + Math.max(...deps[n].map((x) => d(x, seen))) : 0);
  };
  order.forEach((n) => d(n));
  const cols = {}, pos = {};
  for (const n of order) { (cols[depth[n]] = cols[depth[n]] || []).push(n); }
  const W = 150, H = 34, GX = 60, GY = 18;
  for (const [c, ns] of Object.entries(cols)) ns.forEach((n, i) => { pos[n] = { x: 10 + c * (W + GX), y: 10 + i * (H + GY) }; });
  const width = 20 + (Object.keys(cols).length) * (W + GX), height = 20 + Math.max(...Object.values(cols).map((c) => c.length)) * (H + GY);
  const g = svg("svg", { width, height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "Blueprint graph with step states" });
  g.append(svg("title", {}, "Steps of " + bp.name + " and their states"));
  for (const n of order) for (const p of deps[n]) if (pos[p]) {
    g.append(svg("line", { x1: pos[p].x + W, y1: pos[p].y + H / 2, x2: pos[n].x, y2: pos[n].y + H / 2, stroke: "#8a939e" }));
  }
  const color = { completed: "#d7f0dd", failed: "#f6d6d3", scheduled: "#dbe8f7", started: "#dbe8f7", approval_requested: "#f7ebcc" };
  for (const n of order) {
    const st = (steps[n] || {}).status || "not started";
    const grp = svg("g", {});
    grp.append(svg("rect", { x: pos[n].x, y: pos[n].y, width: W, height: H, rx: 4, fill: color[st] || "#eef0f2", stroke: "#8a939e" }));
    grp.append(svg("text", { x: pos[n].x + 6, y: pos[n].y + 14 }, n));
    grp.append(svg("text", { x: pos[n].x + 6, y: pos[n].y + 28, fill: "#5b6470" }, st));
    g.append(grp);
  }
  return g;
}

function timeline(events) {
  /* one bar per step attempt: from StepScheduled to the event that ended it */
  const bars = [], open = {};
  const ends = { StepCompleted: "completed", StepFailed: "failed", ApprovalGranted: "completed", ApprovalRejected: "failed",
                 ApprovalTimedOut: "failed", StepRetryScheduled: "retry" };
  for (const e of events) {
    const p = e.payload || {}, s = p.step;
    if (!s) continue;
    const key = s + "#" + (p.attempt || 1);
    if (e.type === "StepScheduled") { open[key] = { step: s, attempt: p.attempt || 1, from: e.recorded_at_ms, to: null, how: "running" }; bars.push(open[key]); }
    else if (open[key] && e.type in ends) { open[key].to = e.recorded_at_ms; open[key].how = ends[e.type]; }
    else if (open[key]) open[key].note = e.type;
  }
  if (!bars.length) return el("p", {}, "No step has been scheduled yet.");
  const now = Date.now(), t0 = Math.min(...bars.map((b) => b.from)), t1 = Math.max(...bars.map((b) => b.to || now), t0 + 1);
  const W = 700, L = 170, RH = 20, scale = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 10);
  const g = svg("svg", { width: W, height: 30 + bars.length * RH, viewBox: "0 0 " + W + " " + (30 + bars.length * RH), role: "img", "aria-label": "Timeline of step attempts" });
  g.append(svg("title", {}, "Step attempts over time, " + ((t1 - t0) / 1000).toFixed(3) + " s in all"));
  const fill = { completed: "#3f9a58", failed: "#c8453c", retry: "#c98a1b", running: "#4a86c7" };
  bars.forEach((b, i) => {
    const y = 10 + i * RH;
    g.append(svg("text", { x: 4, y: y + 12 }, b.step + " #" + b.attempt));
    const r = svg("rect", { x: scale(b.from), y, width: Math.max(2, scale(b.to || now) - scale(b.from)), height: RH - 6, fill: fill[b.how] });
    r.append(svg("title", {}, b.step + " attempt " + b.attempt + ": " + b.how + ", " + (((b.to || now) - b.from) / 1000).toFixed(3) + " s" + (b.note ? " (" + b.note + ")" : "")));
    g.append(r);
  });
  g.append(svg("text", { x: L, y: 22 + bars.length * RH }, "0 s"));
  g.append(svg("text", { x: W - 60, y: 22 + bars.length * RH }, ((t1 - t0) / 1000).toFixed(2) + " s"));
  return g;
}

function actionForm(title, fields, submit) {
  const f = el("form", { class: "action", "aria-label": title, onsubmit: async (e) => {
      e.preventDefault();
      if (!confirm(title + "?")) return;
      try { await submit(new FormData(f)); say(title + ": done"); } catch (err) { say(title + ": " + err.message); }
    } }, el("strong", {}, title), fields, el("button", { type: "submit" }, title));
  return f;
}
const parseOr = (t) => { t = (t || "").trim(); return t ? JSON.parse(t) : undefined; };

async function executionPage(id) {
  let [x, h] = await Promise.all([api("GET", "/api/v1/executions/" + id), api("GET", "/api/v1/executions/" + id + "/history?limit=10000")]);
  const events = h.events;
  let bp = null;
  try { bp = (await api("GET", "/api/v1/blueprints/" + encodeURIComponent(x.execution.blueprint) + "/versions/" + x.execution.version)).blueprint; } catch (e) { bp = null; }
  const root = el("div", {});
  function render() {
    const ex = x.execution, steps = (x.state && x.state.steps) || {};
    const parent = events.length && events[0].payload && events[0].payload.parent;
    const children = Object.entries(steps).filter(([, s]) => s.child).map(([n, s]) => el("li", {}, n + ": ", el("a", { href: "#/execution/" + s.child }, el("code", {}, s.child))));
    const waiting = Object.entries(steps).filter(([, s]) => s.status === "approval_requested").map(([n]) => n);
    const final = ["completed", "failed", "cancelled"].includes(ex.status);
    root.replaceChildren(...[
      el("h2", {}, "Execution ", el("code", {}, ex.execution_id)),
      el("dl", { class: "kv" },
        el("dt", {}, "Status"), el("dd", {}, stat(ex.status)),
        el("dt", {}, "Blueprint"), el("dd", {}, el("a", { href: "#/blueprints/" + encodeURIComponent(ex.blueprint) }, ex.blueprint), " ", el("code", {}, ex.version.slice(0, 12))),
        el("dt", {}, "Started"), el("dd", {}, time(ex.started_at_ms)),
        el("dt", {}, "Finished"), el("dd", {}, time(ex.finished_at_ms)),
        el("dt", {}, "Idempotency key"), el("dd", {}, ex.idempotency_key || "-"),
        el("dt", {}, "Parent"), el("dd", {}, parent ? el("a", { href: "#/execution/" + parent.execution_id }, el("code", {}, parent.execution_id), " (step " + parent.step + ")") : "-"),
        el("dt", {}, "Children"), el("dd", {}, children.length ? el("ul", {}, children) : "-")),
      final ? null : el("section", { "aria-label": "Actions" }, el("h3", {}, "Act on it"),
        waiting.length ? actionForm("Approve", [el("label", {}, "Step", el("select", { name: "step" }, waiting.map((s) => el("option", { value: s }, s)))),
                                                el("label", {}, "Response (JSON)", el("textarea", { name: "response", rows: 2, cols: 30 }, "{}"))],
          (f) => api("POST", "/api/v1/executions/" + id + "/approve", { step: f.get("step"), response: parseOr(f.get("response")), actor: "console" })) : null,
        waiting.length ? actionForm("Reject", [el("label", {}, "Step", el("select", { name: "step" }, waiting.map((s) => el("option", { value: s }, s)))),
                                               el("label", {}, "Reason", el("input", { name: "reason" }))],
          (f) => api("POST", "/api/v1/executions/" + id + "/reject", { step: f.get("step"), reason: f.get("reason"), actor: "console" })) : null,
        actionForm("Send signal", [el("label", {}, "Name", el("input", { name: "name", required: true })), el("label", {}, "Data (JSON)", el("textarea", { name: "data", rows: 2, cols: 30 }))],
          (f) => api("POST", "/api/v1/executions/" + id + "/signal", { name: f.get("name"), data: parseOr(f.get("data")) })),
        actionForm("Cancel", [el("label", {}, "Reason", el("input", { name: "reason" }))],
          (f) => api("POST", "/api/v1/executions/" + id + "/cancel", { reason: f.get("reason") }))),
      el("div", { class: "grid" },
        el("section", {}, el("h3", {}, "Graph"), bp ? dag(bp, steps) : el("p", {}, "Blueprint not found.")),
        el("section", {}, el("h3", {}, "Timeline"), timeline(events))),
      el("section", {}, el("h3", {}, "Steps"), el("table", {},
        el("thead", {}, el("tr", {}, ["Step", "Status", "Attempt", "Result or error"].map((t) => el("th", { scope: "col" }, t)))),
        el("tbody", {}, Object.entries(steps).map(([n, s]) => el("tr", {}, el("td", {}, n), el("td", {}, stat(s.status)), el("td", {}, s.attempt || ""),
          el("td", {}, s.result !== undefined ? el("pre", {}, pretty(s.result)) : s.error !== undefined ? el("pre", {}, pretty(s.error)) : "")))))),
      el("div", { class: "grid" },
        el("section", {}, el("h3", {}, "Inputs"), el("pre", {}, pretty(ex.inputs))),
        el("section", {}, el("h3", {}, ex.error ? "Error" : "Result"), el("pre", {}, pretty(ex.error || ex.result)))),
      el("section", {}, el("h3", {}, "History"), el("table", {},
        el("thead", {}, el("tr", {}, ["Seq", "Type", "Recorded", "Payload"].map((t) => el("th", { scope: "col" }, t)))),
        el("tbody", {}, events.map((e) => el("tr", {}, el("td", {}, e.seq), el("td", {}, e.type), el("td", {}, time(e.recorded_at_ms)),
          el("td", {}, el("details", {}, el("summary", {}, JSON.stringify(e.payload).slice(0, 80)), el("pre", {}, pretty(e.payload)))))))))].filter(Boolean));
  }
  render();
  main.replaceChildren(root);
  stream("/api/v1/stream/executions/" + id + "?after_seq=" + (events.length ? events[events.length - 1].seq : 0), {
    history: (e) => { if (!events.length || e.seq > events[events.length - 1].seq) events.push(e); },
    execution: (j) => { x = j; render(); },
    end: (j) => { x = j; render(); closeStreams(); },
  });
}

/* ---- the other pages ---- */
async function workersPage() {
  const j = await api("GET", "/api/v1/workers");
  main.replaceChildren(el("h2", {}, "Workers"), el("table", {},
    el("thead", {}, el("tr", {}, ["Id", "Queues", "Capabilities", "Running", "Max", "Last seen", "Alive", "SDK"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, j.workers.map((w) => el("tr", {}, el("td", {}, w.worker_id), el("td", {}, w.queues.join(", ")),
      el("td", {}, Object.entries(w.capabilities).map(([k, v]) => k + "=" + v).join(", ")), el("td", {}, w.active_tasks),
      el("td", {}, w.max_concurrency), el("td", {}, time(w.last_seen_at_ms)), el("td", {}, w.alive ? "yes" : "no"), el("td", {}, w.sdk_version || ""))))));
}
async function blueprintsPage(name, version) {
  if (!name) {
    const j = await api("GET", "/api/v1/blueprints");
    main.replaceChildren(el("h2", {}, "Blueprints"), el("table", {},
      el("thead", {}, el("tr", {}, ["Name", "Versions", "Latest", "Updated"].map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, j.blueprints.map((b) => el("tr", {}, el("td", {}, el("a", { href: "#/blueprints/" + encodeURIComponent(b.name) }, b.name)),
        el("td", {}, b.versions), el("td", {}, el("code", {}, b.latest_version.slice(0, 12))), el("td", {}, time(b.updated_at_ms)))))));
    return;
  }
  const j = await api("GET", "/api/v1/blueprints/" + encodeURIComponent(name));
  const v = version || j.versions[0].version;
  const def = await api("GET", "/api/v1/blueprints/" + encodeURIComponent(name) + "/versions/" + v);
  main.replaceChildren(el("h2", {}, "Blueprint " + name),
    el("p", {}, el("a", { href: "#/executions?blueprint=" + encodeURIComponent(name) }, "Its executions")),
    el("table", {}, el("tbody", {}, j.versions.map((x) => el("tr", {},
      el("td", {}, el("a", { href: "#/blueprints/" + encodeURIComponent(name) + "/" + x.version }, el("code", {}, x.version))),
      el("td", {}, time(x.created_at_ms)), el("td", {}, x.latest ? "latest" : ""))))),
    el("div", { class: "grid" }, el("section", {}, el("h3", {}, "Graph"), dag(def.blueprint, {})),
      el("section", {}, el("h3", {}, "Definition"), el("pre", {}, pretty(def.blueprint)))));
}
async function councilsPage(name) {
  if (name) {
    const c = await api("GET", "/api/v1/councils/" + encodeURIComponent(name));
    main.replaceChildren(el("h2", {}, "Council " + c.name), el("p", {}, el("code", {}, c.version)), el("pre", {}, pretty(c.council)));
    return;
  }
  const j = await api("GET", "/api/v1/councils");
  main.replaceChildren(el("h2", {}, "Councils"), el("table", {},
    el("thead", {}, el("tr", {}, ["Name", "Role", "Agents", "Version", "Stored"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, j.councils.map((c) => el("tr", {}, el("td", {}, el("a", { href: "#/councils/" + encodeURIComponent(c.name) }, c.name)),
      el("td", {}, c.role), el("td", {}, c.agents), el("td", {}, el("code", {}, c.version.slice(0, 12))), el("td", {}, time(c.created_at_ms)))))));
}
async function triggersPage() {
  const j = await api("GET", "/api/v1/triggers");
  main.replaceChildren(el("h2", {}, "Triggers"), el("table", {},
    el("thead", {}, el("tr", {}, ["Name", "Version", "Updated", "Definition"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, j.triggers.map((t) => el("tr", {}, el("td", {}, t.name), el("td", {}, el("code", {}, t.version.slice(0, 12))),
      el("td", {}, time(t.updated_at_ms)), el("td", {}, el("pre", {}, pretty(t.trigger))))))));
}

async function route() {
  closeStreams();
  say("");
  const h = location.hash || "#/executions";
  const [path, query] = h.slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const q = new URLSearchParams(query || "");
  try {
    if (parts[0] === "execution" && parts[1]) await executionPage(parts[1]);
    else if (parts[0] === "workers") await workersPage();
    else if (parts[0] === "blueprints") await blueprintsPage(parts[1], parts[2]);
    else if (parts[0] === "councils") await councilsPage(parts[1]);
    else if (parts[0] === "triggers") await triggersPage();
    else await listPage(q);
    main.focus({ preventScroll: true });
  } catch (e) {
    say(e.message);
  }
}
window.addEventListener("hashchange", route);
route();
