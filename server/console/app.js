/*
 * app.js - the Cerebelum web console (docs/console.md). Plain JavaScript, no
 * framework, nothing loaded from elsewhere. It reads the JSON API under
 * /api/v1 (docs/http.md) and its server-sent events, and draws:
 *
 *   #/executions?status=&blueprint=&since=&q=&after=   the list, keyset pages
 *   #/executions/<id>                                   one execution: graph,
 *        timeline, deliberation (when it is one), history, decisions
 *   #/workers  #/blueprints[/<name>[/<version>]]  #/councils[/<name>]  #/triggers
 *
 * Every value from the server goes into the page as text (textContent,
 * createTextNode, SVG text nodes): step results are user data and are never
 * parsed as HTML. The token lives in a cookie (cerebelum_token, SameSite=
 * Strict) because EventSource cannot send an Authorization header; requests
 * made with fetch send it as a Bearer header as well.
 */
'use strict';

const API = '/api/v1';
const FINAL = new Set(['completed', 'failed', 'cancelled']);
const EXEC_STATUSES = ['running', 'sleeping', 'awaiting_approval', 'awaiting_signal',
  'awaiting_child', 'completed', 'failed', 'cancelled'];
const SYMBOL = { completed: '✓', failed: '✗', cancelled: '⊘', running: '▶', waiting: '◔',
  pending: '○', skipped: '↷', sleeping: '☾' };
const PAGE_SIZE = 20;

/* ---- small helpers ------------------------------------------------------ */

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

const SVGNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function fmtTime(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  return d.toISOString().replace('T', ' ').replace('Z', '');
}
function fmtDur(ms) {
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  if (ms < 3600000) return (ms / 60000).toFixed(1) + ' min';
  return (ms / 3600000).toFixed(1) + ' h';
}
function pretty(v) { return JSON.stringify(v, null, 2); }
function short(id) { return id && id.length > 13 ? id.slice(0, 8) + '…' : id; }
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/* The class and words for an execution's or a step's status: a symbol and
 * the word always, colour only on top. */
function stepClass(st) {
  if (!st) return 'pending';
  if (st === 'completed' || st === 'approval_granted' || st === 'child_completed') return 'completed';
  if (st === 'failed' || st === 'approval_rejected' || st === 'approval_timed_out') return 'failed';
  if (st === 'cancelled') return 'cancelled';
  if (st === 'skipped' || st === 'branch_taken' || st === 'diverge_taken') return 'skipped';
  if (/approval_requested|signal|child_started|awaiting|sleep|timer/.test(st)) return 'waiting';
  return 'running';
}
function execClass(st) {
  if (FINAL.has(st)) return st;
  if (st === 'running') return 'running';
  if (st === 'sleeping') return 'sleeping';
  return 'waiting';
}
function badge(status, cls) {
  const c = cls || execClass(status);
  return h('span', { class: 'badge s-' + c, 'data-status': status },
    (SYMBOL[c] || '•') + ' ' + String(status).replace(/_/g, ' '));
}
function jsonBlock(v, label) {
  return h('pre', { class: 'json', tabindex: 0, 'aria-label': label || 'JSON' }, pretty(v));
}
/* A value shown at once when short, folded behind its size when long. */
function foldedJson(v, label) {
  const text = JSON.stringify(v);
  if (text.length <= 400) return jsonBlock(v, label);
  return h('details', {}, h('summary', {}, label + ' (' + text.length + ' bytes)'), jsonBlock(v, label));
}

/* ---- notices ------------------------------------------------------------ */

function notice(msg, isError) {
  const n = document.getElementById('notice');
  n.className = 'notice' + (isError ? ' error' : '');
  n.textContent = msg || '';
}

/* ---- the token ----------------------------------------------------------- */

function getToken() {
  const m = document.cookie.match(/(?:^|;\s*)cerebelum_token=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : '';
}
function setToken(t) {
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = 'cerebelum_token=' + encodeURIComponent(t) + '; Path=/; SameSite=Strict' + secure;
}
function forgetToken() {
  document.cookie = 'cerebelum_token=; Path=/; Max-Age=0; SameSite=Strict';
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = {};
  const tok = getToken();
  if (tok) headers.Authorization = 'Bearer ' + tok;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(API + path, { method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'network', 'the server cannot be reached (' + e.message + ')');
  }
  let j = null;
  try { j = await r.json(); } catch (e) { j = null; }
  if (!r.ok) {
    const err = (j && j.error) || {};
    const e = new ApiError(r.status, err.code || 'http_' + r.status, err.message || r.statusText);
    if (r.status === 401) showLogin(e.message);
    throw e;
  }
  return j;
}

/* ---- live updates (EventSource) ------------------------------------------ */

let stream = null;
function closeStream() {
  if (stream) { stream.close(); stream = null; }
  setLive(false);
}
function setLive(on, what) {
  const l = document.getElementById('live');
  l.classList.toggle('on', !!on);
  l.textContent = on ? 'live' + (what ? ': ' + what : '') : 'not live';
}
function openStream(path, handlers) {
  closeStream();
  const es = new EventSource(API + path, { withCredentials: true });
  stream = es;
  es.onopen = () => { if (stream === es) setLive(true, handlers.what); };
  es.onerror = () => {
    if (stream !== es) return;
    setLive(false);
    /* EventSource reconnects by itself; a closed one (401, 404) does not:
     * ask the API why so a 401 shows the login form. */
    if (es.readyState === EventSource.CLOSED && handlers.onclosed) handlers.onclosed();
  };
  for (const [ev, fn] of Object.entries(handlers)) {
    if (ev === 'what' || ev === 'onclosed') continue;
    es.addEventListener(ev, (m) => {
      if (stream !== es) return;
      let d = null;
      try { d = JSON.parse(m.data); } catch (e) { return; }
      fn(d, m);
    });
  }
  return es;
}

/* ---- confirmation ---------------------------------------------------------- */

function confirmStep(title, text, yesLabel) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-yes').textContent = yesLabel || 'Confirm';
  const back = document.activeElement;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => {
      if (back && back.focus) back.focus();
      resolve(dlg.returnValue === 'ok');
    }, { once: true });
    dlg.returnValue = 'cancel';
    dlg.showModal();
    document.getElementById('confirm-no').focus();
  });
}

/* ---- routing ------------------------------------------------------------- */

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/executions';
  const [p, q] = raw.split('?');
  const parts = p.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(q || '') };
}

let renderSeq = 0;
async function route() {
  const seq = ++renderSeq;
  closeStream();
  notice('');
  const { parts, query } = parseHash();
  const section = parts[0] || 'executions';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const main = document.getElementById('main');
  const view = h('div', { id: 'view' });
  try {
    if (section === 'executions' && parts[1]) await executionPage(view, parts[1], seq);
    else if (section === 'executions') await listPage(view, query, seq);
    else if (section === 'workers') await workersPage(view);
    else if (section === 'blueprints') await blueprintsPage(view, parts[1], parts[2]);
    else if (section === 'councils') await councilsPage(view, parts[1]);
    else if (section === 'triggers') await triggersPage(view);
    else view.append(h('h1', { text: 'Not found' }), h('p', {}, 'No page at ', h('code', {}, location.hash)));
  } catch (e) {
    if (seq !== renderSeq) return;
    if (e.status === 401) return; /* the login form is up */
    view.append(h('h1', { text: 'Error' }),
      h('p', { class: 'error', role: 'alert' }, (e.status ? e.status + ' ' + e.code + ': ' : '') + e.message));
  }
  if (seq !== renderSeq) return;
  main.replaceChildren(view);
  /* Which fragment the page now shows (tests wait for it after navigating). */
  main.dataset.rendered = location.hash || '#/executions';
  document.getElementById('logout').hidden = !getToken();
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/* ---- login --------------------------------------------------------------- */

function showLogin(message) {
  renderSeq++;
  closeStream();
  const main = document.getElementById('main');
  main.dataset.rendered = 'login';
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true });
  const form = h('form', {
    onsubmit: (ev) => {
      ev.preventDefault();
      setToken(input.value.trim());
      notice('');
      route();
    },
  },
  h('label', { for: 'token' }, 'Token', input),
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  main.replaceChildren(h('section', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in'),
    h('p', {}, 'This server needs its token (the one given to ', h('code', {}, 'cerebelum serve --token'), ').'),
    message ? h('p', { role: 'alert', class: 'muted' }, 'The server said: ' + message) : null,
    form));
  document.getElementById('logout').hidden = true;
  input.focus();
}

/* ---- executions list --------------------------------------------------------- */

const SINCE = { '': 'any time', '1h': 'last hour', '24h': 'last 24 hours', '7d': 'last 7 days' };
const SINCE_MS = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };

function listHash(q) {
  const p = new URLSearchParams();
  for (const k of ['status', 'blueprint', 'since', 'q', 'after', 'trail']) if (q[k]) p.set(k, q[k]);
  const t = p.toString();
  return '#/executions' + (t ? '?' + t : '');
}

function execRow(x) {
  return h('tr', { 'data-id': x.execution_id },
    h('td', {}, h('a', { href: '#/executions/' + x.execution_id, class: 'mono', title: x.execution_id }, x.execution_id)),
    h('td', {}, x.blueprint),
    h('td', { class: 'status' }, badge(x.status)),
    h('td', {}, fmtTime(x.started_at_ms)),
    h('td', { class: 'updated' }, fmtTime(x.updated_at_ms)),
    h('td', { class: 'mono' }, x.idempotency_key || ''));
}

/* Idempotency keys have no lookup in the API: scan the newest executions
 * that match the other filters, page by page, up to a bound. */
async function findByKey(key, status, blueprint) {
  let after = '';
  for (let scanned = 0; scanned < 5000;) {
    const p = new URLSearchParams({ limit: '1000' });
    if (status) p.set('status', status);
    if (blueprint) p.set('blueprint', blueprint);
    if (after) p.set('after', after);
    const r = await api('GET', '/executions?' + p);
    const hit = r.executions.find((x) => x.idempotency_key === key);
    if (hit) return hit;
    scanned += r.executions.length;
    if (!r.next_after) break;
    after = r.next_after;
  }
  return null;
}

async function listPage(view, query, seq) {
  const q = Object.fromEntries(['status', 'blueprint', 'since', 'q', 'after', 'trail'].map((k) => [k, query.get(k) || '']));
  const statusSel = h('select', { id: 'f-status', name: 'status' },
    h('option', { value: '' }, 'any status'),
    EXEC_STATUSES.map((st) => h('option', { value: st, selected: st === q.status }, st.replace(/_/g, ' '))));
  const bpInput = h('input', { id: 'f-blueprint', name: 'blueprint', value: q.blueprint, placeholder: 'any', size: 14 });
  const sinceSel = h('select', { id: 'f-since', name: 'since' },
    Object.entries(SINCE).map(([v, t]) => h('option', { value: v, selected: v === q.since }, t)));
  const search = h('input', { id: 'f-q', name: 'q', type: 'search', value: q.q, size: 38,
    placeholder: 'execution id or idempotency key' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter executions',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const nq = { status: statusSel.value, blueprint: bpInput.value.trim(), since: sinceSel.value, q: search.value.trim() };
      if (nq.q) {
        if (UUID_RE.test(nq.q)) { go('#/executions/' + nq.q.toLowerCase()); return; }
        notice('Looking for idempotency key ' + nq.q + '…');
        try {
          const hit = await findByKey(nq.q, nq.status, nq.blueprint);
          if (hit) { go('#/executions/' + hit.execution_id); return; }
          notice('No execution with id or idempotency key "' + nq.q + '" among the newest 5,000 that match the filters.', true);
        } catch (e) { if (e.status !== 401) notice(e.message, true); }
        return;
      }
      go(listHash(nq));
    } },
  h('label', { for: 'f-status' }, 'Status', statusSel),
  h('label', { for: 'f-blueprint' }, 'Blueprint', bpInput),
  h('label', { for: 'f-since' }, 'Started', sinceSel),
  h('label', { for: 'f-q' }, 'Search', search),
  h('button', { type: 'submit', class: 'primary' }, 'Apply'));

  const p = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (q.status) p.set('status', q.status);
  if (q.blueprint) p.set('blueprint', q.blueprint);
  if (q.after) p.set('after', q.after);
  const r = await api('GET', '/executions?' + p);
  if (seq !== renderSeq) return;
  const cutoff = q.since ? Date.now() - SINCE_MS[q.since] : 0;
  const rows = r.executions.filter((x) => x.started_at_ms >= cutoff);
  /* Newest first: once one row is older than the cutoff, so is every later page. */
  const more = r.next_after && rows.length === r.executions.length;
  const tbody = h('tbody', {}, rows.map(execRow));
  const table = h('table', { id: 'executions', 'aria-describedby': 'list-caption' },
    h('caption', { id: 'list-caption', class: 'muted', style: null },
      rows.length === 0 ? 'No executions match.' : rows.length + ' execution' + (rows.length === 1 ? '' : 's') + ' on this page, newest first'),
    h('thead', {}, h('tr', {}, ['Execution', 'Blueprint', 'Status', 'Started', 'Updated', 'Idempotency key'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const trail = q.trail ? q.trail.split('.') : [];
  const prevBtn = h('button', { type: 'button', id: 'prev', disabled: !q.after,
    onclick: () => {
      const t = trail.slice();
      const back = t.pop() || '';
      go(listHash({ ...q, after: back === '-' ? '' : back, trail: t.join('.') }));
    } }, '← Previous');
  const nextBtn = h('button', { type: 'button', id: 'next', disabled: !more,
    onclick: () => go(listHash({ ...q, after: r.next_after, trail: trail.concat([q.after || '-']).join('.') })) }, 'Next →');
  view.append(h('h1', {}, 'Executions'), form, h('div', { class: 'scroll' }, table),
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prevBtn, h('span', { class: 'muted', id: 'page-no' }, 'page ' + (trail.length + 1)), nextBtn));

  /* Live: rows change in place; on the first page, executions started
   * after the newest one shown (and matching the filters) are added on top.
   * The stream's first poll sends the newest 100, most of them older. */
  const newest = rows.reduce((m, y) => Math.max(m, y.started_at_ms), 0);
  const matches = (x) => (!q.status || x.status === q.status) && (!q.blueprint || x.blueprint === q.blueprint) &&
    x.started_at_ms >= cutoff && x.started_at_ms > newest;
  const sp = new URLSearchParams();
  if (q.status) sp.set('status', q.status);
  if (q.blueprint) sp.set('blueprint', q.blueprint);
  openStream('/stream/executions' + (sp.toString() ? '?' + sp : ''), {
    what: 'executions',
    /* A refused stream (401) does not reconnect: ask the API, whose 401
     * brings the sign-in form. */
    onclosed: () => { api('GET', '/executions?limit=1').catch(() => {}); },
    execution: (x) => {
      const row = tbody.querySelector('tr[data-id="' + x.execution_id + '"]');
      if (row) { row.replaceWith(execRow(x)); return; }
      if (!q.after && matches(x) && !rows.some((y) => y.execution_id === x.execution_id)) {
        tbody.prepend(execRow(x));
        rows.unshift(x);
        if (tbody.children.length > PAGE_SIZE) tbody.lastElementChild.remove();
      }
    },
  });
}

/* ---- one execution ---------------------------------------------------------- */

/* Layers by dependency: a step's layer is one more than its deepest
 * dependency's. Within a layer, declaration order. */
function layers(steps) {
  const byName = new Map(steps.map((st) => [st.name, st]));
  const depth = new Map();
  const visiting = new Set();
  function d(name) {
    if (depth.has(name)) return depth.get(name);
    if (visiting.has(name)) return 0; /* a cycle cannot be registered; stay safe */
    visiting.add(name);
    const st = byName.get(name);
    let v = 0;
    for (const dep of (st && st.depends_on) || []) if (byName.has(dep)) v = Math.max(v, d(dep) + 1);
    visiting.delete(name);
    depth.set(name, v);
    return v;
  }
  const out = [];
  for (const st of steps) {
    const v = d(st.name);
    (out[v] = out[v] || []).push(st);
  }
  return out.map((l) => l || []);
}

function blueprintSteps(bp) {
  const steps = [];
  const seen = new Set();
  let prev = null;
  for (const t of (bp && bp.timeline) || []) {
    const st = typeof t === 'string' ? { name: t } : Object.assign({}, t);
    st.depends_on = (st.depends_on || []).concat(prev ? [prev] : []);
    steps.push(st);
    seen.add(st.name);
    prev = st.name;
  }
  for (const st of (bp && bp.steps) || []) if (!seen.has(st.name)) steps.push(st);
  return steps;
}

function dagSvg(bp, stepState) {
  const steps = blueprintSteps(bp);
  const L = layers(steps);
  const W = 168, H = 46, GX = 56, GY = 14;
  const pos = new Map();
  let maxRows = 0;
  L.forEach((layer, i) => {
    maxRows = Math.max(maxRows, layer.length);
    layer.forEach((st, j) => pos.set(st.name, { x: 10 + i * (W + GX), y: 10 + j * (H + GY) }));
  });
  const width = 20 + L.length * (W + GX) - GX, height = 20 + maxRows * (H + GY) - GY;
  const svg = s('svg', { id: 'dag', role: 'img', width, height, viewBox: `0 0 ${width} ${height}`,
    'aria-label': 'Blueprint graph: ' + steps.length + ' steps in ' + L.length + ' layers' });
  svg.append(s('title', {}, 'Blueprint graph'));
  svg.append(s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8c959f' }))));
  for (const st of steps) {
    const b = pos.get(st.name);
    for (const dep of st.depends_on || []) {
      const a = pos.get(dep);
      if (!a) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(s('path', { class: 'edge', d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, 'marker-end': 'url(#arrow)' }));
    }
  }
  for (const st of steps) {
    const p = pos.get(st.name);
    const ss = stepState[st.name];
    const status = ss ? ss.status : 'pending';
    const cls = stepClass(ss && ss.status);
    const kind = st.kind || 'task';
    const title = st.name + (kind !== 'task' ? ' · ' + kind : '');
    const label = title.length > 24 ? title.slice(0, 23) + '…' : title;
    svg.append(s('g', { class: 'node s-' + cls, 'data-step': st.name, 'data-state': status, transform: `translate(${p.x},${p.y})` },
      s('title', {}, `${st.name} (${kind}): ${status}${ss && ss.attempt ? ', attempt ' + ss.attempt : ''}`),
      s('rect', { width: W, height: H, rx: 6 }),
      s('text', { x: 8, y: 18, 'font-weight': 600 }, label),
      s('text', { x: 8, y: 36, class: 'state' }, (SYMBOL[cls] || '') + ' ' + status.replace(/_/g, ' '))));
  }
  return svg;
}

/* Attempts from the history: one bar per step attempt with the phases it
 * went through (queued, running, sleeping, waiting) and how it ended. */
function attemptsFrom(events, now) {
  const open = new Map();
  const bars = [];
  const key = (p) => p.step + '#' + (p.attempt || 1);
  function bar(p, t) {
    const k = key(p);
    let b = open.get(k);
    if (!b) {
      b = { step: p.step, attempt: p.attempt || 1, start: t, segs: [], end: null, outcome: null, cur: null };
      open.set(k, b);
      bars.push(b);
    }
    return b;
  }
  function phase(b, kind, t) {
    if (b.cur) { b.cur.to = t; }
    b.cur = kind ? { kind, from: t, to: null } : null;
    if (b.cur) b.segs.push(b.cur);
  }
  for (const e of events) {
    const p = e.payload || {};
    const t = e.recorded_at_ms;
    if (!p.step) continue;
    const b = () => bar(p, t);
    switch (e.type) {
      case 'StepScheduled': phase(b(), 'queued', t); break;
      case 'StepStarted': phase(b(), 'run', t); break;
      case 'SleepStarted': phase(b(), 'sleep', t); break;
      case 'ApprovalRequested': case 'ChildStarted': phase(b(), 'wait', t); break;
      case 'StepCompleted': { const x = b(); phase(x, null, t); x.end = t; x.outcome = 'ok'; open.delete(key(p)); break; }
      case 'StepFailed': { const x = b(); phase(x, null, t); x.end = t; x.outcome = 'bad'; open.delete(key(p)); break; }
      case 'StepRetryScheduled': {
        /* Names the next attempt; the failed one ended with StepFailed. */
        const x = bar(p, t);
        phase(x, 'retry', t);
        break;
      }
      default: break;
    }
  }
  for (const b of bars) {
    if (b.cur && b.cur.to === null) b.cur.to = now;
    if (b.end === null) b.end = now;
  }
  return bars;
}

function timelineSvg(events, finishedAt) {
  const now = finishedAt || Date.now();
  const bars = attemptsFrom(events, now);
  if (bars.length === 0) return h('p', { class: 'muted', id: 'timeline' }, 'No step has been scheduled yet.');
  const t0 = Math.min(...bars.map((b) => b.start));
  const t1 = Math.max(now, ...bars.map((b) => b.end));
  const span = Math.max(1, t1 - t0);
  const LW = 190, W = 760, RH = 22;
  const x = (t) => LW + ((t - t0) / span) * W;
  const height = 30 + bars.length * RH;
  const svg = s('svg', { id: 'timeline', role: 'img', width: LW + W + 20, height,
    'aria-label': 'Timeline of ' + bars.length + ' attempts over ' + fmtDur(span) });
  svg.append(s('title', {}, 'Timeline of attempts'));
  for (let i = 0; i <= 4; i++) {
    const tx = LW + (W * i) / 4;
    svg.append(s('line', { class: 'axis', x1: tx, x2: tx, y1: 16, y2: height }));
    svg.append(s('text', { class: 'tick', x: tx, y: 12, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, '+' + fmtDur((span * i) / 4)));
  }
  bars.forEach((b, i) => {
    const y = 22 + i * RH;
    const words = b.segs.map((sg) => `${sg.kind} ${fmtDur(sg.to - sg.from)}`).join(', ');
    const outcome = b.outcome === 'ok' ? 'completed' : b.outcome === 'bad' ? 'failed' : 'not finished';
    const g = s('g', { class: 'attempt', 'data-step': b.step, 'data-attempt': b.attempt, 'data-outcome': outcome },
      s('title', {}, `${b.step} attempt ${b.attempt}: ${words || 'no phase'}; ${outcome}`),
      s('text', { x: 4, y: y + 13 }, (b.step.length > 20 ? b.step.slice(0, 19) + '…' : b.step) + ' #' + b.attempt +
        (b.outcome === 'ok' ? ' ✓' : b.outcome === 'bad' ? ' ✗' : ' …')));
    for (const sg of b.segs) {
      g.append(s('rect', { class: 'bar ' + sg.kind, x: x(sg.from), y: y + 3, height: RH - 8,
        width: Math.max(2, x(sg.to) - x(sg.from)) }));
    }
    /* How it ended: a mark at the end (and ✓/✗ in the label). */
    if (b.outcome) g.append(s('rect', { class: 'bar end ' + b.outcome, x: x(b.end) - 4, y: y + 1, width: 5, height: RH - 4 }));
    svg.append(g);
  });
  return svg;
}

function timelineLegend() {
  return h('div', { class: 'legend', 'aria-hidden': 'true' },
    h('span', { class: 'queued' }, 'scheduled or running'), h('span', { class: 'run' }, 'running (started)'),
    h('span', { class: 'ok' }, 'end: completed ✓'), h('span', { class: 'bad' }, 'end: failed ✗'),
    h('span', { class: 'sleep' }, 'sleeping'), h('span', { class: 'wait' }, 'waiting (approval, child)'),
    h('span', { class: 'retry' }, 'waiting to retry'));
}

function historyTable(events) {
  return h('table', { id: 'history' },
    h('caption', { class: 'muted' }, events.length + ' events'),
    h('thead', {}, h('tr', {}, ['Seq', 'Recorded', 'Event', 'Step', 'Payload'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, events.map(historyRow)));
}
function historyRow(e) {
  const p = e.payload;
  return h('tr', { 'data-seq': e.seq },
    h('td', {}, String(e.seq)), h('td', {}, fmtTime(e.recorded_at_ms)), h('td', {}, e.type),
    h('td', {}, (p && p.step) || ''),
    h('td', {}, p === null || p === undefined ? '' :
      h('details', {}, h('summary', {}, 'payload (' + JSON.stringify(p).length + ' bytes)'), jsonBlock(p, 'payload of event ' + e.seq))));
}

async function allHistory(id, after) {
  const out = [];
  let a = after || 0;
  for (;;) {
    const r = await api('GET', `/executions/${id}/history?after_seq=${a}&limit=10000`);
    out.push(...r.events);
    if (!r.more || r.events.length === 0) break;
    a = r.events[r.events.length - 1].seq;
  }
  return out;
}

/* The decisions a person can make now, each behind a confirmation. */
function decisionForms(x, st, refresh) {
  const id = x.execution_id;
  const forms = [];
  async function act(what, body, title, text) {
    if (!(await confirmStep(title, text, title))) { notice(title + ': not sent.'); return; }
    try {
      const r = await api('POST', `/executions/${id}/${what}`, body);
      notice(title + ': done (event ' + r.seq + ').');
      refresh();
    } catch (e) {
      if (e.status === 401) return;
      notice(title + ' failed: ' + e.status + ' ' + e.code + ': ' + e.message, true);
    }
  }
  function parseJson(area, what) {
    const t = area.value.trim();
    if (!t) return { ok: true, v: undefined };
    try { return { ok: true, v: JSON.parse(t) }; } catch (e) {
      notice(what + ' is not valid JSON: ' + e.message, true);
      area.focus();
      return { ok: false };
    }
  }
  if (FINAL.has(x.status)) return h('p', { class: 'muted', id: 'decisions' }, 'Finished: nothing to decide.');
  const waiting = Object.entries(st.steps || {}).filter(([, v]) => v.status === 'approval_requested').map(([k]) => k);
  for (const step of waiting) {
    const idp = 'ap-' + step.replace(/[^A-Za-z0-9_-]/g, '_');
    const resp = h('textarea', { id: idp + '-resp', name: 'response', placeholder: '{"ok": true}' });
    const actor = h('input', { id: idp + '-actor', name: 'actor', placeholder: 'your name' });
    const reason = h('input', { id: idp + '-reason', name: 'reason' });
    forms.push(h('form', { class: 'approve', 'data-step': step, 'aria-labelledby': idp + '-h',
      onsubmit: (ev) => {
        ev.preventDefault();
        const r = parseJson(resp, 'The response');
        if (!r.ok) return;
        act('approve', { step, response: r.v, actor: actor.value.trim() || undefined },
          'Approve', `Approve step "${step}" of execution ${id}? It will continue.`);
      } },
    h('h3', { id: idp + '-h' }, 'Approval: ' + step),
    h('label', { for: idp + '-resp' }, 'Response (JSON, optional)', resp),
    h('label', { for: idp + '-actor' }, 'Who decides (optional)', actor),
    h('button', { type: 'submit', class: 'primary' }, 'Approve…'),
    h('label', { for: idp + '-reason' }, 'Reason to reject', reason),
    h('button', { type: 'button', class: 'danger',
      onclick: () => act('reject', { step, reason: reason.value.trim() || undefined, actor: actor.value.trim() || undefined },
        'Reject', `Reject step "${step}" of execution ${id}? The step fails.`) }, 'Reject…')));
  }
  const sigName = h('input', { id: 'sig-name', name: 'name', required: true });
  const sigData = h('textarea', { id: 'sig-data', name: 'data', placeholder: '{"n": 1}' });
  forms.push(h('form', { class: 'signal', 'aria-labelledby': 'sig-h',
    onsubmit: (ev) => {
      ev.preventDefault();
      const r = parseJson(sigData, 'The data');
      if (!r.ok) return;
      act('signal', { name: sigName.value.trim(), data: r.v }, 'Send signal', `Send signal "${sigName.value.trim()}" to execution ${id}?`);
    } },
  h('h3', { id: 'sig-h' }, 'Signal'),
  h('label', { for: 'sig-name' }, 'Name', sigName),
  h('label', { for: 'sig-data' }, 'Data (JSON, optional)', sigData),
  h('button', { type: 'submit' }, 'Send signal…')));
  const why = h('input', { id: 'cancel-reason', name: 'reason' });
  forms.push(h('form', { class: 'cancel', 'aria-labelledby': 'cancel-h',
    onsubmit: (ev) => {
      ev.preventDefault();
      act('cancel', { reason: why.value.trim() || undefined }, 'Cancel execution', `Cancel execution ${id}? This cannot be undone.`);
    } },
  h('h3', { id: 'cancel-h' }, 'Cancel'),
  h('label', { for: 'cancel-reason' }, 'Reason (optional)', why),
  h('button', { type: 'submit', class: 'danger', id: 'cancel-btn' }, 'Cancel execution…')));
  return h('div', { class: 'actions', id: 'decisions' }, forms);
}

/* A deliberation's child (docs/deliberation.md §2-5): its steps are gen.<i>,
 * crit.<r>.<i>[.<j>], rev.<r>.<i>, score.<i>, select (and pick, finish). */
function isDeliberation(st) {
  const names = Object.keys((st && st.steps) || {});
  return names.includes('select') || (names.some((n) => n.startsWith('gen.')) && names.some((n) => /^(score|crit|rev)\./.test(n)));
}
function deliberationView(st, result) {
  const steps = st.steps || {};
  const names = Object.keys(steps).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const sel = (result && (result.select || result.finish)) || (steps.select && steps.select.result) || null;
  const agents = new Map();
  const tokens = { prompt: 0, completion: 0, calls: 0 };
  const rows = [];
  /* Agent i's name, from its own calls (gen.<i>, rev.<r>.<i>); a score call's
   * result names the judge, and score.<i> scores agent i. */
  const nameOf = new Map();
  for (const n of names) {
    const m = n.match(/^(gen|rev)\.(?:\d+\.)?(\d+)$/);
    const r = steps[n].result;
    if (m && r && typeof r.agent === 'string') nameOf.set(m[2], r.agent);
  }
  for (const n of names) {
    const v = steps[n];
    const m = n.match(/^(gen|crit|rev|score)\.(.*)$/);
    if (!m) continue;
    const r = v.result || {};
    const idx = m[1] === 'crit' ? m[2].split('.')[1] : m[2].split('.').pop();
    const who = nameOf.get(idx) || (m[1] !== 'score' && r.agent) || ('agent ' + idx);
    if (!agents.has(who)) agents.set(who, { proposals: 0, critiques: 0, score: null });
    const a = agents.get(who);
    if (m[1] === 'gen' || m[1] === 'rev') a.proposals++;
    if (m[1] === 'crit') a.critiques++;
    if (r.usage) {
      tokens.prompt += r.usage.prompt_tokens || 0;
      tokens.completion += r.usage.completion_tokens || 0;
      tokens.calls++;
    }
    const phase = { gen: 'proposal', rev: 'revision', crit: 'critique', score: 'score' }[m[1]] +
      (m[1] === 'score' && r.agent ? ' (by ' + r.agent + ')' : '');
    let body;
    if (v.error) body = h('span', { class: 's-failed' }, '✗ ' + (v.error.kind || 'failed') + ': ' + (v.error.message || ''));
    else if (m[1] === 'score' && r.content_json) body = h('div', {}, jsonBlock(r.content_json, 'score of ' + n));
    else if (typeof r.content === 'string') body = h('div', { class: 'proposal' }, r.content);
    else body = h('span', { class: 'muted' }, v.status.replace(/_/g, ' '));
    rows.push(h('tr', { 'data-step': n }, h('td', { class: 'mono' }, n), h('td', {}, phase), h('td', {}, who), h('td', {}, body),
      h('td', {}, r.usage ? `${r.usage.prompt_tokens || 0} in / ${r.usage.completion_tokens || 0} out` : '')));
  }
  const ranking = (sel && sel.ranking) || [];
  for (const rk of ranking) if (agents.has(rk.agent)) agents.get(rk.agent).score = rk.score;
  return h('section', { id: 'deliberation', 'aria-labelledby': 'delib-h' },
    h('h2', { id: 'delib-h' }, 'Deliberation'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Winner'), h('dd', { id: 'winner' }, sel && sel.winner ? `★ ${sel.winner.agent} (${sel.winner.step}, score ${sel.winner.score})` : 'not decided yet'),
      h('dt', {}, 'Tokens'), h('dd', { id: 'tokens' },
        sel && sel.usage ? `${sel.usage.prompt_tokens || 0} prompt, ${sel.usage.completion_tokens || 0} completion in ${sel.usage.calls || 0} calls (the result's usage); ` : '',
        `${tokens.prompt} prompt, ${tokens.completion} completion in ${tokens.calls} calls (every call below)`),
      sel && sel.council ? [h('dt', {}, 'Council'), h('dd', {}, h('a', { href: '#/councils/' + encodeURIComponent(sel.council.name) }, sel.council.name))] : null),
    h('h3', {}, 'Agents'),
    h('table', { id: 'agents' }, h('thead', {}, h('tr', {}, ['Agent', 'Proposals', 'Critiques written', 'Score'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, [...agents].map(([n, a]) => h('tr', {}, h('td', {}, n), h('td', {}, String(a.proposals)), h('td', {}, String(a.critiques)),
        h('td', {}, a.score === null ? '–' : String(a.score)))))),
    sel && sel.winner && sel.winner.content ? h('details', { open: true }, h('summary', {}, 'Winning proposal'), h('div', { class: 'proposal panel' }, sel.winner.content)) : null,
    h('h3', {}, 'Proposals, critiques and scores'),
    h('table', { id: 'delib-steps' }, h('thead', {}, h('tr', {}, ['Step', 'Phase', 'Agent', 'Content', 'Tokens'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)),
    sel && sel.failed && sel.failed.length ? [h('h3', {}, 'Failed agents'), jsonBlock(sel.failed, 'failed agents')] : null);
}

async function executionPage(view, id, seq) {
  const g = await api('GET', '/executions/' + encodeURIComponent(id));
  let x = g.execution, st = g.state || { steps: {} };
  let events = await allHistory(id, 0);
  let bp = null;
  try {
    const b = await api('GET', `/blueprints/${encodeURIComponent(x.blueprint)}/versions/${encodeURIComponent(x.version)}`);
    bp = b.blueprint;
  } catch (e) {
    if (e.status === 401) throw e;
  }
  if (seq !== renderSeq) return;
  const started = events.find((e) => e.type === 'ExecutionStarted');
  const parent = started && started.payload && started.payload.parent;

  const head = h('div', {});
  const dagBox = h('div', { class: 'scroll', id: 'dag-box' });
  const tlBox = h('div', { class: 'scroll', id: 'timeline-box' });
  const actBox = h('div', {});
  const delibBox = h('div', {});
  const histBox = h('div', {});
  const kidsBox = h('div', {});
  let refreshing = false, again = false;

  function children() {
    const kids = new Map();
    for (const e of events) if (e.type === 'ChildStarted' && e.payload && e.payload.child) kids.set(e.payload.child, e.payload.step);
    for (const [k, v] of Object.entries(st.steps || {})) if (v.child) kids.set(v.child, k);
    return kids;
  }
  function draw() {
    head.replaceChildren(
      h('h1', {}, 'Execution ', h('span', { class: 'mono', id: 'exec-id' }, x.execution_id), ' ', h('span', { id: 'exec-status' }, badge(x.status))),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Blueprint'), h('dd', {}, h('a', { href: '#/blueprints/' + encodeURIComponent(x.blueprint) }, x.blueprint),
          ' ', h('a', { class: 'mono muted', href: `#/blueprints/${encodeURIComponent(x.blueprint)}/${x.version}` }, short(x.version))),
        h('dt', {}, 'Started'), h('dd', {}, fmtTime(x.started_at_ms)),
        h('dt', {}, 'Updated'), h('dd', {}, fmtTime(x.updated_at_ms)),
        h('dt', {}, 'Finished'), h('dd', {}, fmtTime(x.finished_at_ms)),
        x.idempotency_key ? [h('dt', {}, 'Idempotency key'), h('dd', { class: 'mono' }, x.idempotency_key)] : null,
        parent ? [h('dt', {}, 'Parent'), h('dd', {}, h('a', { id: 'parent-link', href: '#/executions/' + parent.execution_id, class: 'mono' }, parent.execution_id),
          ` (step ${parent.step}, attempt ${parent.attempt})`)] : null,
        h('dt', {}, 'Inputs'), h('dd', {}, foldedJson(x.inputs, 'inputs')),
        x.result !== null && x.result !== undefined ? [h('dt', {}, 'Result'), h('dd', {}, foldedJson(x.result, 'result'))] : null,
        x.error ? [h('dt', {}, 'Error'), h('dd', {}, foldedJson(x.error, 'error'))] : null));
    dagBox.replaceChildren(bp ? dagSvg(bp, st.steps || {}) : h('p', { class: 'muted' }, 'The blueprint version could not be read.'));
    tlBox.replaceChildren(timelineSvg(events, x.finished_at_ms));
    const kids = children();
    kidsBox.replaceChildren(kids.size === 0 ? h('p', { class: 'muted' }, 'None.') :
      h('ul', { id: 'children' }, [...kids].map(([cid, step]) => h('li', {}, h('a', { href: '#/executions/' + cid, class: 'mono' }, cid), ' — step ' + step))));
    delibBox.replaceChildren(isDeliberation(st) ? deliberationView(st, x.result) : '');
    histBox.replaceChildren(historyTable(events));
    const focusedId = document.activeElement && actBox.contains(document.activeElement) ? document.activeElement.id : null;
    const typing = focusedId && /^(sig-|ap-|cancel-)/.test(focusedId);
    if (!typing) actBox.replaceChildren(decisionForms(x, st, refresh));
  }
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      do {
        again = false;
        const r = await api('GET', '/executions/' + encodeURIComponent(id));
        x = r.execution;
        st = r.state || { steps: {} };
        const last = events.length ? events[events.length - 1].seq : 0;
        if (x.last_seq > last) events = events.concat(await allHistory(id, last));
        if (!document.getElementById('view') || !document.getElementById('view').contains(head)) return;
        draw();
      } while (again);
    } catch (e) {
      if (e.status !== 401) notice('Refresh failed: ' + e.message, true);
    } finally { refreshing = false; }
  }
  draw();
  view.append(head, delibBox,
    h('section', { 'aria-labelledby': 'dec-h' }, h('h2', { id: 'dec-h' }, 'Decisions'), actBox),
    h('section', { 'aria-labelledby': 'dag-h' }, h('h2', { id: 'dag-h' }, 'Graph'), dagBox),
    h('section', { 'aria-labelledby': 'tl-h' }, h('h2', { id: 'tl-h' }, 'Timeline'), timelineLegend(), tlBox),
    h('section', { 'aria-labelledby': 'kids-h' }, h('h2', { id: 'kids-h' }, 'Children'), kidsBox),
    h('section', { 'aria-labelledby': 'hist-h' }, h('h2', { id: 'hist-h' }, 'History'), histBox));
  if (!FINAL.has(x.status)) {
    const last = events.length ? events[events.length - 1].seq : 0;
    openStream(`/stream/executions/${encodeURIComponent(id)}?after_seq=${last}`, {
      what: 'execution',
      history: (e) => {
        if (events.length && e.seq <= events[events.length - 1].seq) return;
        events.push(e);
      },
      execution: () => refresh(),
      end: () => { refresh(); closeStream(); },
      onclosed: () => refresh(),
    });
  }
}

/* ---- workers, blueprints, councils, triggers --------------------------------- */

async function workersPage(view) {
  const r = await api('GET', '/workers');
  const ws = r.workers || [];
  view.append(h('h1', {}, 'Workers'),
    ws.length === 0 ? h('p', { class: 'muted' }, 'No worker is registered with this server.') :
      h('table', { id: 'workers' },
        h('thead', {}, h('tr', {}, ['Worker', 'State', 'Queues', 'Capabilities', 'Running tasks', 'Last seen', 'SDK'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, ws.map((w) => h('tr', { 'data-worker': w.worker_id },
          h('td', { class: 'mono' }, w.worker_id),
          h('td', {}, badge(w.alive ? 'alive' : 'gone', w.alive ? 'completed' : 'cancelled')),
          h('td', {}, (w.queues || []).join(', ')),
          h('td', {}, Object.entries(w.capabilities || {}).map(([k, v]) => k + '=' + v).join(', ') || '–'),
          h('td', {}, `${w.active_tasks} of ${w.max_concurrency}`),
          h('td', {}, fmtTime(w.last_seen_at_ms)),
          h('td', {}, w.sdk_version || '')))))); 
}

async function blueprintsPage(view, name, version) {
  if (name && version) {
    const r = await api('GET', `/blueprints/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`);
    view.append(h('h1', {}, 'Blueprint ', name),
      h('p', {}, 'Version ', h('span', { class: 'mono' }, r.version), ' · ', h('a', { href: '#/blueprints/' + encodeURIComponent(name) }, 'all versions'),
        ' · ', h('a', { href: listHash({ blueprint: name }) }, 'its executions')),
      h('h2', {}, 'Graph'), h('div', { class: 'scroll' }, dagSvg(r.blueprint, {})),
      h('h2', {}, 'Definition'), jsonBlock(r.blueprint, 'blueprint definition'));
    return;
  }
  if (name) {
    const r = await api('GET', '/blueprints/' + encodeURIComponent(name));
    view.append(h('h1', {}, 'Blueprint ', name), h('p', {}, h('a', { href: listHash({ blueprint: name }) }, 'Executions of ' + name)),
      h('table', { id: 'versions' }, h('thead', {}, h('tr', {}, ['Version', 'Registered', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, r.versions.map((v) => h('tr', {},
          h('td', {}, h('a', { class: 'mono', href: `#/blueprints/${encodeURIComponent(name)}/${v.version}` }, v.version)),
          h('td', {}, fmtTime(v.created_at_ms)), h('td', {}, v.latest ? 'latest' : ''))))));
    return;
  }
  const r = await api('GET', '/blueprints');
  view.append(h('h1', {}, 'Blueprints'),
    h('table', { id: 'blueprints' }, h('thead', {}, h('tr', {}, ['Name', 'Versions', 'Latest version', 'Updated'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, (r.blueprints || []).map((b) => h('tr', {},
        h('td', {}, h('a', { href: '#/blueprints/' + encodeURIComponent(b.name) }, b.name)),
        h('td', {}, String(b.versions)),
        h('td', {}, h('a', { class: 'mono', href: `#/blueprints/${encodeURIComponent(b.name)}/${b.latest_version}` }, short(b.latest_version))),
        h('td', {}, fmtTime(b.updated_at_ms)))))));
}

async function councilsPage(view, name) {
  if (name) {
    const r = await api('GET', '/councils/' + encodeURIComponent(name));
    const c = r.council || {};
    view.append(h('h1', {}, 'Council ', name), h('p', {}, 'Version ', h('span', { class: 'mono' }, r.version)),
      h('h2', {}, 'Agents'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Id', 'Profile'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, (c.agents || []).map((a) => h('tr', {}, h('td', {}, a.id || ''), h('td', {}, jsonBlock(a, 'agent')))))),
      h('h2', {}, 'Definition'), jsonBlock(c, 'council definition'));
    return;
  }
  const r = await api('GET', '/councils');
  const cs = r.councils || [];
  view.append(h('h1', {}, 'Councils'), cs.length === 0 ? h('p', { class: 'muted' }, 'No council is registered.') :
    h('table', { id: 'councils' }, h('thead', {}, h('tr', {}, ['Name', 'Role', 'Agents', 'Version', 'Registered'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, cs.map((c) => h('tr', {},
        h('td', {}, h('a', { href: '#/councils/' + encodeURIComponent(c.name) }, c.name)), h('td', {}, c.role || ''),
        h('td', {}, String(c.agents)), h('td', { class: 'mono' }, short(c.version)), h('td', {}, fmtTime(c.created_at_ms)))))));
}

async function triggersPage(view) {
  const r = await api('GET', '/triggers');
  const ts = r.triggers || [];
  view.append(h('h1', {}, 'Triggers'), ts.length === 0 ? h('p', { class: 'muted' }, 'No trigger is defined.') :
    h('table', { id: 'triggers' }, h('thead', {}, h('tr', {}, ['Name', 'Version', 'Updated', 'Definition'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ts.map((t) => h('tr', {}, h('td', {}, t.name), h('td', { class: 'mono' }, short(t.version)),
        h('td', {}, fmtTime(t.updated_at_ms)), h('td', {}, h('details', {}, h('summary', {}, 'definition'), jsonBlock(t.trigger, 'trigger ' + t.name))))))));
}

/* ---- start --------------------------------------------------------------- */

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('logout').addEventListener('click', () => { forgetToken(); closeStream(); showLogin(''); });
  route();
});
