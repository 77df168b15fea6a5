// console_test.mjs - the web console in headless Chromium (run by
// console_test.sh, which starts the server and a worker and sets
// CONSOLE_URL, CONSOLE_TOKEN, CONSOLE_SHOTS, CHROMIUM, PIPELINE_JSON).
//
// Each scenario drives the page as a person would (clicks, keys, the
// confirmation dialog) and asserts on the DOM it draws, cross-checking
// with the JSON API what the server holds. Nothing here reloads a page to
// see a change unless the scenario says so. Waits are for a condition,
// bounded (a broken page fails instead of hanging), never for a time.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const BASE = process.env.CONSOLE_URL;
const TOKEN = process.env.CONSOLE_TOKEN;
const SHOTS = process.env.CONSOLE_SHOTS;
const WAIT = 20000; // the bound of every wait for a condition, ms

let failures = 0;
function fail(what, detail) {
  failures++;
  console.error(`FAIL: ${what}${detail !== undefined ? '\n  ' + detail : ''}`);
}
function check(cond, what, detail) {
  if (!cond) fail(what, detail);
  return !!cond;
}
function eq(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  return check(g === w, what, `got:  ${g}\n  want: ${w}`);
}

// JSON with its object keys sorted (the server stores canonical JSON).
function sorted(v) {
  if (Array.isArray(v)) return v.map(sorted);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]));
  return v;
}

async function api(method, p, body, token = TOKEN) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch(BASE + '/api/v1' + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const j = await r.json().catch(() => null);
  return { status: r.status, body: j };
}
async function ok(method, p, body) {
  const r = await api(method, p, body);
  if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
async function start(blueprint, inputs, key) {
  return (await ok('POST', '/executions', { blueprint, inputs, idempotency_key: key })).execution_id;
}
async function statusOf(id) { return (await ok('GET', '/executions/' + id)).execution.status; }
async function until(what, fn) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < WAIT) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('never: ' + what + ' (last: ' + JSON.stringify(last) + ')');
}
async function reaches(id, status) { await until(`${id} is ${status}`, async () => (await statusOf(id)) === status); }

async function shot(page, name, at) {
  await page.evaluate(() => window.scrollTo(0, 0));
  if (at) await page.evaluate((sel) => document.querySelector(sel).scrollIntoView(), at);
  await page.screenshot({ path: path.join(SHOTS, name + '.png') });
}

// ---- the data the pages show ------------------------------------------------

const BLUEPRINTS = [
  { name: 'demo', steps: [{ name: 'a', handler: 'echo' }, { name: 'b', handler: 'echo', depends_on: ['a'] }] },
  { name: 'gate', steps: [{ name: 'ok', kind: 'approval' }, { name: 'after', handler: 'echo', depends_on: ['ok'] }] },
  { name: 'wait', steps: [{ name: 'ping', kind: 'signal', signal: 'go' }, { name: 'after', handler: 'echo', depends_on: ['ping'] }] },
  { name: 'diamond', steps: [
    { name: 'fetch', handler: 'echo' },
    { name: 'price', handler: 'echo', depends_on: ['fetch'] },
    { name: 'nap', kind: 'sleep', duration_ms: 30, depends_on: ['fetch'] },
    { name: 'ship', handler: 'echo', depends_on: ['price', 'nap'] }] },
  { name: 'boom', steps: [{ name: 'explode', handler: 'fail' }, { name: 'never', handler: 'echo', depends_on: ['explode'] }] },
  { name: 'leaf', steps: [{ name: 'only', handler: 'echo' }] },
  { name: 'parent', steps: [{ name: 'kid', kind: 'subworkflow', blueprint: 'leaf' }] },
];

async function seed() {
  for (const bp of BLUEPRINTS) await ok('POST', '/blueprints', bp);
  await ok('POST', '/blueprints', JSON.parse(readFileSync(process.env.PIPELINE_JSON, 'utf8')));
  const demos = [];
  for (let i = 0; i < 25; i++) demos.push(await start('demo', { i }, i === 7 ? 'order-42' : undefined));
  const gates = [];
  for (let i = 0; i < 4; i++) gates.push(await start('gate', { g: i }));
  const diamond = await start('diamond', {});
  const parent = await start('parent', {});
  const pipeline = await start('pipeline', { url: 'https://example.invalid/doc' });
  for (const id of demos) await reaches(id, 'completed');
  for (const id of gates) await reaches(id, 'awaiting_approval');
  await reaches(diamond, 'completed');
  await reaches(parent, 'completed');
  await reaches(pipeline, 'completed');
  return { demos, gates, diamond, parent, pipeline };
}

// ---- scenarios -----------------------------------------------------------------

async function login(page) {
  await page.goto(BASE + '/');
  await page.waitForSelector('#token', { timeout: WAIT });
  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#executions', { timeout: WAIT });
}

// Wait until the page has drawn the fragment it is at (app.js sets
// main[data-rendered] once a view is complete).
async function rendered(page) {
  await page.waitForFunction(() => document.querySelector('main').dataset.rendered === (location.hash || '#/executions'), null, { timeout: WAIT });
}

async function open(page, hash) {
  await page.goto(BASE + '/' + hash);
  await rendered(page);
}

const rowIds = (page) => page.$$eval('#executions tbody tr', (rs) => rs.map((r) => r.dataset.id));
const cellTexts = (page, col) => page.$$eval(`#executions tbody tr td:nth-child(${col})`, (cs) => cs.map((c) => c.textContent));

async function listAndPaging(page, d) {
  // Without the token the page asks for it; with a wrong one it asks again.
  await page.goto(BASE + '/');
  await page.waitForSelector('#token', { timeout: WAIT });
  check(await page.isVisible('text=Sign in'), 'without a token the page shows the sign-in form');
  await shot(page, 'login');
  await page.fill('#token', 'wrong-' + TOKEN);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#token', { timeout: WAIT });
  check((await page.textContent('main')).includes('valid token is required'), 'a wrong token: the server\'s 401 message is shown');
  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#executions', { timeout: WAIT });
  eq((await rowIds(page)).length, 20, 'the first page of all executions has 20 rows');

  // Filter by blueprint, with the keyboard.
  await page.fill('#f-blueprint', 'demo');
  await page.press('#f-blueprint', 'Enter');
  await page.waitForFunction(() => location.hash.includes('blueprint=demo'), null, { timeout: WAIT });
  await rendered(page);
  const api1 = (await ok('GET', '/executions?blueprint=demo&limit=20')).executions.map((x) => x.execution_id);
  const page1 = await rowIds(page);
  eq(page1, api1, 'blueprint=demo, page 1: the newest 20 demo executions, newest first');
  check((await cellTexts(page, 2)).every((t) => t === 'demo'), 'every row of page 1 is a demo execution');
  check(!(await page.isDisabled('#next')), 'page 1 of 25: Next is enabled');
  check(await page.isDisabled('#prev'), 'page 1: Previous is disabled');
  await shot(page, 'executions');

  await page.click('#next');
  await page.waitForFunction(() => document.querySelector('#page-no') && document.querySelector('#page-no').textContent === 'page 2', null, { timeout: WAIT });
  const page2 = await rowIds(page);
  eq(page2.length, 5, 'page 2 holds the other 5 demo executions');
  check(page2.every((id) => !page1.includes(id)), 'pages 1 and 2 do not overlap');
  eq([...page1, ...page2].sort(), [...d.demos].sort(), 'pages 1 and 2 together are exactly the 25 demo executions');
  check(await page.isDisabled('#next'), 'the last page: Next is disabled');
  await page.click('#prev');
  await page.waitForFunction(() => document.querySelector('#page-no').textContent === 'page 1', null, { timeout: WAIT });
  eq(await rowIds(page), page1, 'Previous comes back to page 1');

  // Filter by status: only the gates wait for an approval.
  await page.fill('#f-blueprint', '');
  await page.selectOption('#f-status', 'awaiting_approval');
  await page.click('form.filters button[type=submit]');
  await page.waitForFunction(() => location.hash.includes('status=awaiting_approval'), null, { timeout: WAIT });
  await rendered(page);
  eq((await rowIds(page)).sort(), [...d.gates].sort(), 'status=awaiting_approval lists exactly the 4 gates');
  check((await page.$$eval('#executions td.status .badge', (bs) => bs.map((b) => b.textContent))).every((t) => t.includes('awaiting approval')),
    'the status column says "awaiting approval" in words');
  // Started: "last hour" keeps them all (they started a moment ago).
  await page.selectOption('#f-since', '1h');
  await page.click('form.filters button[type=submit]');
  await page.waitForFunction(() => location.hash.includes('since=1h'), null, { timeout: WAIT });
  await rendered(page);
  eq((await rowIds(page)).length, 4, 'status=awaiting_approval, started in the last hour: 4');

  // Search by idempotency key and by id.
  await open(page, '#/executions');
  await page.fill('#f-q', 'order-42');
  await page.press('#f-q', 'Enter');
  await page.waitForFunction((id) => location.hash === '#/executions/' + id, d.demos[7], { timeout: WAIT });
  await page.waitForSelector('#exec-id', { timeout: WAIT });
  eq(await page.textContent('#exec-id'), d.demos[7], 'search by idempotency key opens that execution');
  await open(page, '#/executions');
  await page.fill('#f-q', d.demos[3]);
  await page.press('#f-q', 'Enter');
  await page.waitForSelector('#exec-id', { timeout: WAIT });
  eq(await page.textContent('#exec-id'), d.demos[3], 'search by id opens that execution');
  await open(page, '#/executions');
  await page.fill('#f-q', 'no-such-key');
  await page.press('#f-q', 'Enter');
  await page.waitForFunction(() => document.querySelector('#notice').textContent.includes('No execution'), null, { timeout: WAIT });
}

async function graphAndTimeline(page, d) {
  await open(page, '#/executions/' + d.diamond);
  await page.waitForSelector('#dag g.node', { timeout: WAIT });
  const nodes = await page.$$eval('#dag g.node', (gs) => gs.map((g) => {
    const m = g.getAttribute('transform').match(/translate\(([\d.]+),([\d.]+)\)/);
    return { step: g.dataset.step, state: g.dataset.state, x: +m[1], y: +m[2], text: g.textContent };
  }));
  const by = Object.fromEntries(nodes.map((n) => [n.step, n]));
  eq(nodes.map((n) => n.step).sort(), ['fetch', 'nap', 'price', 'ship'], 'the graph has the 4 steps of diamond');
  check(by.fetch.x < by.price.x && by.price.x === by.nap.x && by.nap.x < by.ship.x,
    'the graph is layered by dependency: fetch, then price and nap side by side, then ship', JSON.stringify(nodes));
  check(by.price.y !== by.nap.y, 'price and nap do not overlap', JSON.stringify(nodes));
  check(nodes.every((n) => n.state === 'completed' && n.text.includes('completed')), 'every step says completed, in words', JSON.stringify(nodes));
  eq(await page.$$eval('#dag path.edge', (es) => es.length), 4, 'the graph has the 4 dependency edges');
  // The timeline: one attempt per step, each finished; the sleep slept.
  const bars = await page.$$eval('#timeline g.attempt', (gs) => gs.map((g) => ({
    step: g.dataset.step, attempt: g.dataset.attempt, outcome: g.dataset.outcome,
    kinds: [...g.querySelectorAll('rect.bar')].map((r) => r.getAttribute('class').replace('bar ', '')) })));
  eq(bars.map((b) => b.step).sort(), ['fetch', 'nap', 'price', 'ship'], 'the timeline has one attempt per step');
  check(bars.every((b) => b.outcome === 'completed'), 'every attempt completed', JSON.stringify(bars));
  const nap = bars.find((b) => b.step === 'nap');
  check(nap && nap.kinds.includes('sleep'), 'the sleep step\'s attempt has a sleeping phase', JSON.stringify(nap));
  const ship = bars.find((b) => b.step === 'ship');
  check(ship && ship.kinds[0] === 'queued' && ship.kinds.includes('end ok'), 'a task attempt shows its scheduled phase and its completion', JSON.stringify(ship));
  check(nap && nap.kinds.includes('end ok'), 'the sleep ended completed', JSON.stringify(nap));
  // History: every event, payloads readable.
  const hist = (await ok('GET', `/executions/${d.diamond}/history`)).events;
  eq(await page.$$eval('#history tbody tr', (rs) => rs.map((r) => +r.dataset.seq)), hist.map((e) => e.seq), 'the history table lists every event');
  await page.click('#history tbody tr:first-child summary');
  const payload = await page.textContent('#history tbody tr:first-child pre.json');
  check(payload.includes('\n') && JSON.stringify(JSON.parse(payload)) === JSON.stringify(hist[0].payload), 'the first event\'s payload is pretty JSON, equal to the API\'s');
  await shot(page, 'execution');

  // A failed step: the graph, the timeline and the error say so in words.
  const boom = await start('boom', {});
  await reaches(boom, 'failed');
  await open(page, '#/executions/' + boom);
  await page.waitForSelector('#dag g.node', { timeout: WAIT });
  eq(await page.getAttribute('#dag g.node[data-step="explode"]', 'data-state'), 'failed', 'the failed step is failed in the graph');
  check((await page.textContent('#dag g.node[data-step="explode"]')).includes('✗ failed'), 'the failed step says "✗ failed"');
  eq(await page.getAttribute('#dag g.node[data-step="never"]', 'data-state'), 'pending', 'the step after it never ran');
  eq(await page.getAttribute('#timeline g.attempt[data-step="explode"]', 'data-outcome'), 'failed', 'the timeline\'s attempt ended failed');
  check((await page.$$('#timeline g.attempt[data-step="explode"] rect.bar.end.bad')).length === 1, 'the attempt has the failed end mark');
  check((await page.textContent('#exec-status')).includes('failed'), 'the execution says failed');
  check((await page.textContent('#view')).includes('the demo handler \'fail\' always fails'), 'the error message is shown');

  // Parent and child link each other.
  await open(page, '#/executions/' + d.parent);
  await page.waitForSelector('#children a', { timeout: WAIT });
  const child = await page.textContent('#children a');
  await page.click('#children a');
  await page.waitForSelector('#parent-link', { timeout: WAIT });
  eq(await page.textContent('#parent-link'), d.parent, 'the child links back to its parent');
  eq(await page.textContent('#exec-id'), child, 'the child link opens the child');
}

async function approve(page, d) {
  const id = d.gates[0];
  await open(page, '#/executions/' + id);
  await page.waitForSelector('form.approve[data-step="ok"]', { timeout: WAIT });
  eq(await page.getAttribute('#dag g.node[data-step="ok"]', 'data-state'), 'approval_requested', 'the graph shows the approval waiting');
  await shot(page, 'approval');
  await page.fill('#ap-ok-resp', '{"yes": true, "by": "console"}');
  await page.fill('#ap-ok-actor', 'alice');
  await page.click('form.approve button[type=submit]');
  await page.waitForSelector('#confirm[open]', { timeout: WAIT });
  check((await page.textContent('#confirm-text')).includes('Approve step "ok"'), 'the confirmation names the step');
  eq(await statusOf(id), 'awaiting_approval', 'nothing is sent before the confirmation');
  await page.click('#confirm-yes');
  await page.waitForFunction(() => document.querySelector('#exec-status [data-status]')?.dataset.status === 'completed', null, { timeout: WAIT });
  const after = await page.getAttribute('#dag g.node[data-step="after"]', 'data-state');
  eq(after, 'completed', 'after the approval the next step ran (the page says so)');
  const x = (await ok('GET', '/executions/' + id)).execution;
  eq(x.status, 'completed', 'the server agrees: completed');
  eq(sorted(x.result.after.deps.ok), sorted({ yes: true, by: 'console' }), 'the response typed in the page is the approval step\'s result');
  const hist = (await ok('GET', `/executions/${id}/history`)).events;
  check(hist.some((e) => e.type === 'ApprovalGranted' && e.payload.by === 'alice'), 'ApprovalGranted names the actor typed in the page', JSON.stringify(hist.map((e) => e.payload)));
}

async function cancel(page, d) {
  const id = d.gates[1];
  await open(page, '#/executions/' + id);
  await page.waitForSelector('#cancel-btn', { timeout: WAIT });
  await page.fill('#cancel-reason', 'from the console test');
  // Keyboard: focus the button and press Enter; then go back.
  await page.focus('#cancel-btn');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm[open]', { timeout: WAIT });
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('#confirm').open, null, { timeout: WAIT });
  eq(await statusOf(id), 'awaiting_approval', 'going back from the confirmation sends nothing');
  await page.click('#cancel-btn');
  await page.waitForSelector('#confirm[open]', { timeout: WAIT });
  await page.click('#confirm-yes');
  await page.waitForFunction(() => document.querySelector('#exec-status [data-status]')?.dataset.status === 'cancelled', null, { timeout: WAIT });
  eq(await statusOf(id), 'cancelled', 'the server agrees: cancelled');
  const hist = (await ok('GET', `/executions/${id}/history`)).events;
  eq(hist[hist.length - 1].type, 'ExecutionCancelled', 'the last event is ExecutionCancelled');
  check(hist.some((e) => e.type === 'CancelRequested' && e.payload.reason === 'from the console test'), 'the reason typed in the page is in CancelRequested');
}

async function refusedWithoutToken(browser, page, d) {
  const id = d.gates[2];
  await open(page, '#/executions/' + id);
  await page.waitForSelector('#cancel-btn', { timeout: WAIT });
  // Stop the page's stream first: with the cookie gone its next refresh
  // would get the 401 before the click does.
  await page.waitForFunction(() => document.querySelector('#live').classList.contains('on'), null, { timeout: WAIT });
  await page.evaluate(() => window.closeStream());
  await page.context().clearCookies();
  await page.click('#cancel-btn');
  await page.waitForSelector('#confirm[open]', { timeout: WAIT });
  await page.click('#confirm-yes');
  await page.waitForSelector('#token', { timeout: WAIT });
  check((await page.textContent('main')).includes('valid token is required'), 'a refused action shows the server\'s 401 and the sign-in form');
  eq(await statusOf(id), 'awaiting_approval', 'the refused cancel changed nothing');
  const r = await api('POST', `/executions/${id}/cancel`, {}, null);
  eq(r.status, 401, 'the API refuses a cancel without the token');
  // A fresh browser with no cookie sees no data, only the form.
  const ctx = await browser.newContext();
  const p2 = await ctx.newPage();
  await p2.goto(BASE + '/#/executions/' + id);
  await p2.waitForSelector('#token', { timeout: WAIT });
  eq(await p2.$('#exec-id'), null, 'without the token no execution is shown');
  await ctx.close();
  await login(page);
}

async function liveUpdate(page) {
  const id = await start('wait', { live: true });
  await reaches(id, 'awaiting_signal');
  await open(page, '#/executions/' + id);
  await page.waitForSelector('#dag g.node[data-step="after"]', { timeout: WAIT });
  await page.waitForFunction(() => document.querySelector('#live').classList.contains('on'), null, { timeout: WAIT });
  check((await page.getAttribute('#dag g.node[data-step="after"]', 'data-state')) === 'pending', 'before the signal: after is pending');
  await page.evaluate(() => { window.__noReload = 'still here'; });
  const histRows = await page.$$eval('#history tbody tr', (rs) => rs.length);
  // The signal comes from elsewhere (the API), not from the page.
  await ok('POST', `/executions/${id}/signal`, { name: 'go', data: { n: 1 } });
  await page.waitForFunction(() => document.querySelector('#dag g.node[data-step="after"]')?.dataset.state === 'completed', null, { timeout: WAIT });
  await page.waitForFunction(() => document.querySelector('#exec-status [data-status]')?.dataset.status === 'completed', null, { timeout: WAIT });
  eq(await page.evaluate(() => window.__noReload), 'still here', 'the page updated itself without a reload');
  const rows = await page.$$eval('#history tbody tr', (rs) => rs.length);
  const hist = (await ok('GET', `/executions/${id}/history`)).events;
  check(rows > histRows && rows === hist.length, 'the history grew to every event', `rows ${histRows} -> ${rows}, API ${hist.length}`);
  // The list updates itself too: a new execution appears on page 1.
  await open(page, '#/executions?blueprint=wait');
  await page.waitForSelector('#executions', { timeout: WAIT });
  await page.waitForFunction(() => document.querySelector('#live').classList.contains('on'), null, { timeout: WAIT });
  await page.evaluate(() => { window.__noReload = 'list'; });
  const id2 = await start('wait', { live: 2 });
  await page.waitForSelector(`#executions tr[data-id="${id2}"]`, { timeout: WAIT });
  eq(await page.evaluate(() => window.__noReload), 'list', 'the list showed a new execution without a reload');
  await ok('POST', `/executions/${id2}/cancel`, {});
}

async function otherPages(page, d) {
  await open(page, '#/workers');
  await page.waitForSelector('#workers tr[data-worker="console-worker"]', { timeout: WAIT });
  const w = await page.textContent('#workers tr[data-worker="console-worker"]');
  check(w.includes('default, gpu') && w.includes('gpu=true') && w.includes('alive') && w.includes('of 2'),
    'the workers page shows the worker\'s queues, capabilities, state and concurrency', w);
  await shot(page, 'workers');
  await open(page, '#/blueprints');
  await page.waitForSelector('#blueprints', { timeout: WAIT });
  const names = await page.$$eval('#blueprints tbody tr td:first-child', (cs) => cs.map((c) => c.textContent));
  eq(names, ['boom', 'demo', 'diamond', 'gate', 'leaf', 'parent', 'pipeline', 'wait'], 'the blueprints page lists every blueprint by name');
  await page.click('#blueprints a:text-is("diamond")');
  await page.waitForSelector('#versions a', { timeout: WAIT });
  await page.click('#versions a');
  await page.waitForSelector('#dag g.node', { timeout: WAIT });
  eq(await page.$$eval('#dag g.node', (gs) => gs.length), 4, 'a blueprint version page draws its graph');
  await shot(page, 'blueprint');
  await open(page, '#/councils');
  await page.waitForFunction(() => document.querySelector('#view h1')?.textContent === 'Councils', null, { timeout: WAIT });
  await open(page, '#/triggers');
  await page.waitForFunction(() => document.querySelector('#view h1')?.textContent === 'Triggers', null, { timeout: WAIT });
  // Keyboard: the skip link and the navigation are reachable with Tab (a
  // fresh load: a hash change alone keeps the focus where it was).
  await page.goto('about:blank');
  await open(page, '#/executions');
  await page.keyboard.press('Tab');
  eq(await page.evaluate(() => document.activeElement.textContent), 'Skip to content', 'the first Tab reaches the skip link');
  await page.keyboard.press('Tab');
  eq(await page.evaluate(() => document.activeElement.textContent), 'Executions', 'the next Tab reaches the navigation');
  // Every form control has a label.
  const unlabelled = await page.$$eval('input, select, textarea', (es) => es.filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id || e.name));
  eq(unlabelled, [], 'every control of the list page has a label');
  // Static files: the page, no token needed; an unknown path is a 404.
  const r = await fetch(BASE + '/console/app.js');
  eq(r.status, 200, 'GET /console/app.js without a token');
  const csp = r.headers.get('content-security-policy') || '';
  check(csp.includes("default-src 'self'") && !csp.includes('unsafe-inline'), 'the console is served with a self-only CSP (no inline script)', csp);
  eq((await fetch(BASE + '/console/nope.js')).status, 404, 'a file that is not embedded is a 404');
}

async function deliberation(page) {
  const council = JSON.parse(readFileSync(process.env.COUNCIL_JSON, 'utf8'));
  await ok('POST', '/councils', council);
  await ok('POST', '/blueprints', { name: 'review', steps: [
    { name: 'debate', kind: 'deliberation', council: council.name, task: '$.inputs.task', context: {},
      agents: 3, rounds: 1, topology: 'ring', scoring: { mode: 'judge' },
      selection: { rule: 'top_score', top_k: 3, min_proposals: 2 },
      call: { timeout_ms: 60000, retry: { max_attempts: 3, initial_ms: 100, max_ms: 1000 } },
      budget: { max_calls: 36, max_completion_tokens: 20000, timeout_ms: 600000 } }] });
  const id = await start('review', { task: 'Add rate limiting to the orders API.' });
  await reaches(id, 'completed');
  const x = (await ok('GET', '/executions/' + id)).execution;
  const want = x.result.debate;
  await open(page, '#/executions/' + id);
  await page.waitForSelector('#children a', { timeout: WAIT });
  await page.click('#children a');
  await page.waitForSelector('#deliberation', { timeout: WAIT });
  await rendered(page);
  const winner = await page.textContent('#winner');
  check(winner.includes(want.winner.agent) && winner.includes(want.winner.step), 'the deliberation view names the winner and its step', winner + ' vs ' + JSON.stringify(want.winner));
  const tokens = await page.textContent('#tokens');
  check(tokens.includes(`${want.usage.prompt_tokens} prompt, ${want.usage.completion_tokens} completion in ${want.usage.calls} calls`),
    'the deliberation view shows select\'s token usage', tokens + ' vs ' + JSON.stringify(want.usage));
  const agents = await page.$$eval('#agents tbody tr', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  eq(agents.map((a) => a[0]).sort(), want.ranking.map((r) => r.agent).sort(), 'the agents table has the three agents');
  for (const rk of want.ranking) {
    const row = agents.find((a) => a[0] === rk.agent);
    check(row && row[1] === '2' && row[2] === '1' && row[3] === String(rk.score), `agent ${rk.agent}: 2 proposals, 1 critique, its score`, JSON.stringify(row));
  }
  const steps = await page.$$eval('#delib-steps tbody tr', (rs) => rs.map((r) => [r.dataset.step, r.cells[1].textContent.split(' ')[0], r.cells[3].textContent]));
  eq(steps.map((r) => r[1]).sort(), ['critique', 'critique', 'critique', 'proposal', 'proposal', 'proposal', 'revision', 'revision', 'revision', 'score', 'score', 'score'],
    'the calls table has the 12 calls: 3 proposals, 3 critiques, 3 revisions, 3 scores');
  check(steps.every((r) => r[2].trim().length > 0), 'every call shows its content');
  // Every call's tokens, summed by the page, against the calls' results.
  let prompt = 0, completion = 0, calls = 0;
  const child = (await ok('GET', '/executions/' + (await page.textContent('#exec-id')))).state.steps;
  for (const [n, v] of Object.entries(child)) {
    if (/^(gen|crit|rev|score)\./.test(n) && v.result && v.result.usage) {
      prompt += v.result.usage.prompt_tokens; completion += v.result.usage.completion_tokens; calls++;
    }
  }
  check(calls === 12 && tokens.includes(`${prompt} prompt, ${completion} completion in 12 calls (every call below)`),
    'the deliberation view sums every call\'s tokens', tokens);
  await shot(page, 'deliberation');
}

// ---- main ---------------------------------------------------------------------------

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
let code = 0;
try {
  const d = await seed();
  const ctx = await browser.newContext({ viewport: { width: 1180, height: 760 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const scenarios = [
    ['list filters and paging', () => listAndPaging(page, d)],
    ['graph and timeline', () => graphAndTimeline(page, d)],
    ['approve', () => approve(page, d)],
    ['cancel with confirmation', () => cancel(page, d)],
    ['refused without the token', () => refusedWithoutToken(browser, page, d)],
    ['live update', () => liveUpdate(page)],
    ['workers, blueprints, councils, triggers', () => otherPages(page, d)],
  ];
  if (process.env.COUNCIL_JSON) scenarios.push(['deliberation', () => deliberation(page)]);
  else console.log('# no LLM worker in this build: the deliberation view is not tested');
  for (const [name, fn] of scenarios) {
    const before = failures;
    try {
      await fn();
    } catch (e) {
      fail(name + ': ' + e.message);
      await page.screenshot({ path: path.join(SHOTS, 'failed-' + name.replace(/\W+/g, '_') + '.png') }).catch(() => {});
    }
    console.log(`${failures === before ? 'ok' : 'FAILED'} - ${name}`);
  }
  eq(errors, [], 'no script error in the page');
  await ctx.close();
} catch (e) {
  fail('set-up: ' + (e.stack || e));
} finally {
  await browser.close();
}
if (failures) { console.error(`${failures} failure(s)`); code = 1; }
process.exit(code);
