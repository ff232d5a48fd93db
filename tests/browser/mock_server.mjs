// Mock of the `lrts dashboard` HTTP API (see notes/dashboard_api.md), for developing and testing
// the page in src/dashboard/assets/index.html without the C++ server. No dependencies.
//
//   node mock_server.mjs [--port 0] [--workers 4] [--tasks 300]
//
// Prints "listening http://127.0.0.1:PORT/" once ready. Fake data: a few workers, N tasks whose
// running bars advance every 500 ms, a failed task whose error is 'boom: <b>not bold</b>', and an SSE
// stream at /events with one "status" event per second.
// Mock-only extra (not part of the API): GET /_mock/drop?seconds=S closes the event streams and answers
// /events with 503 for S seconds, to see the page's "disconnected" banner.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const PAGE = path.resolve(here, '../../src/dashboard/assets/index.html');

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf('--' + name); return i >= 0 ? args[i + 1] : def; };
const PORT = Number(opt('port', 0));
const N_WORKERS = Math.max(1, Number(opt('workers', 4)));
const N_TASKS = Math.max(30, Number(opt('tasks', 300)));

const now = () => Date.now() / 1000;
const started = now();
const APPS = [
  { application_id: 'a1b2c3d4e5f60718', connected: true, detached: false },
  { application_id: '9f8e7d6c5b4a3210', connected: false, detached: true },
];
const SERVICES = ['test.progress', 'test.sleep', 'render.frames'];

const workers = [];
for (let i = 0; i < N_WORKERS; i++) {
  const host = 'node-' + String.fromCharCode(97 + (i % 26)) + (i >= 26 ? Math.floor(i / 26) : '');
  workers.push({
    name: `${host}:${4200 + i}`, host, uid: (0x1000abcd + i * 7919).toString(16), slots: 2 + (i % 3), running: 0, held: 0,
    capacity: 8, services: i % 2 ? SERVICES.slice(0, 2) : SERVICES, last_heartbeat_s: 0.2, memory_bytes: 180e6 + i * 37e6,
    state: i === 2 ? 'draining' : 'ok', connected_at: started - 300 - i,
  });
}

const tasks = [];
const counters = { finished: 0, failed: 0, cancelled: 0, timed_out: 0 };
function bar(attempt, total, extra = {}) {
  return { bar: 0, attempt, description: 'Doing Work', unit: 'it', count: 0, total, phase: 'open', rate: null, eta_s: null,
    elapsed_s: 0, started: now(), ...extra };
}
for (let i = 0; i < N_TASKS; i++) {
  const app = APPS[i % 2].application_id;
  tasks.push({ service_id: `${app}-${i}`, application_id: app, service: SERVICES[i % 3], state: 'queued', attempt: 0,
    max_retries: 3, worker: '', run_time_s: null, wait_s: null, error: '', bars: [], attempts: [], submitted: started - 200 + i * 0.1 });
}
function finish(t, state, error = '') {
  t.state = state;
  t.error = error;
  counters[state]++;
  for (const b of t.bars) if (b.phase === 'open') b.phase = state === 'finished' ? 'done' : state;
  const w = workers.find(x => x.name === t.worker);
  if (w) w.running = Math.max(0, w.running - 1);
}
function start(t, w) {
  t.state = 'running';
  t.attempt += 1;
  t.worker = w.name;
  t.attempts.push({ attempt: t.attempt, worker: w.name });
  t.startedAt = now();
  t.wait_s = t.startedAt - t.submitted;
  const i = Number(t.service_id.split('-').pop());
  // the first tasks are long-running so there are always open bars on page 1
  const total = i < 6 ? 4000 : 20 + (i * 37) % 120;
  t.bars.push(bar(t.attempt, i % 11 === 5 ? null : total));
  if (i % 7 === 3) t.bars.push(bar(t.attempt, 50, { bar: 1, description: 'Uploading', unit: 'MiB' }));
  w.running += 1;
}
// initial history: some finished, failures with tricky errors, one cancelled / timed out
for (let i = 6; i < 40; i++) {
  const t = tasks[i], w = workers[i % N_WORKERS];
  start(t, w);
  for (const b of t.bars) { if (b.total) b.count = b.total; b.elapsed_s = 3 + (i % 5); }
  t.run_time_s = 3 + (i % 5);
  if (i === 13) {
    t.bars[0].phase = 'lost';
    t.bars[0].count = 7;
    w.running -= 1;
    start(t, workers[(i + 1) % N_WORKERS]);
    t.bars[1].count = 12;
    finish(t, 'failed', 'boom: <b>not bold</b>');
  } else if (i === 19) finish(t, 'failed', '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> worker crashed\nexit code 139');
  else if (i === 17) finish(t, 'cancelled');
  else if (i === 23) finish(t, 'timed_out', 'timed out after 5s');
  else finish(t, 'finished');
}
const failures = tasks.filter(t => t.state === 'failed' || t.state === 'timed_out')
  .map((t, k) => ({ service_id: t.service_id, application_id: t.application_id, service: t.service, worker: t.worker,
    attempt: t.attempt, error: t.error, t: started - 60 + k * 10 }))
  .reverse();

function dispatch() {
  for (const w of workers) {
    if (w.state !== 'ok') continue;
    while (w.running < w.slots) {
      const t = tasks.find(x => x.state === 'queued');
      if (!t) return;
      start(t, w);
    }
  }
}
function step() {            // every 500 ms
  const t0 = now();
  for (const t of tasks) {
    if (t.state !== 'running') continue;
    t.run_time_s = t0 - t.startedAt;
    for (const b of t.bars) {
      if (b.phase !== 'open') continue;
      b.count += 1 + (Number(t.service_id.split('-').pop()) % 3);
      if (b.total !== null && b.count >= b.total) { b.count = b.total; b.phase = 'done'; }
      b.elapsed_s = t0 - b.started;
      b.rate = b.count / Math.max(0.5, b.elapsed_s);
      b.eta_s = b.total !== null && b.phase === 'open' ? (b.total - b.count) / b.rate : null;
    }
    if (t.bars.every(b => b.phase === 'done')) finish(t, 'finished');
  }
  dispatch();
  for (const w of workers) {
    w.held = w.running + (w.state === 'ok' ? 1 : 0);
    w.last_heartbeat_s = Math.round(Math.random() * 900) / 1000;
  }
}
dispatch();
setInterval(step, 500);

const count = st => tasks.reduce((n, t) => n + (t.state === st), 0);
const TERMINAL = new Set(['finished', 'failed', 'cancelled', 'timed_out']);
function status() {
  const slots = workers.reduce((n, w) => n + w.slots, 0);
  const busy = workers.reduce((n, w) => n + w.running, 0);
  const done = counters.finished + counters.failed + counters.cancelled + counters.timed_out;
  const lastMin = samples.length > 60 ? samples[samples.length - 61] : samples[0];
  return {
    workers: workers.length, slots, busy_slots: busy, idle_slots: slots - busy,
    queued: count('queued'), waiting: 0, running: count('running'), ...counters,
    awaiting_collection: counters.finished, submitted: tasks.length,
    applications: APPS.length, applications_connected: APPS.filter(a => a.connected).length,
    throughput_per_s: samples.length > 1 ? samples[samples.length - 1].completed_total - samples[samples.length - 2].completed_total : 0,
    completed_last_minute: lastMin ? done - lastMin.completed_total : 0,
    failed_last_minute: lastMin ? counters.failed - lastMin.failed_total : 0,
    journal: { enabled: true, path: '/var/lib/lrts/state.db', appended: done * 3, committed: done * 3, backlog: 0 },
    uptime_s: now() - started, version: '0.1.0', scheduler: '127.0.0.1:5555',
    progress_server: { connected: true, address: '127.0.0.1:5454' },
  };
}
const samples = [];
function sample() {
  const s = { t: Math.floor(now()), queued: count('queued'), running: count('running'),
    busy_slots: workers.reduce((n, w) => n + w.running, 0), slots: workers.reduce((n, w) => n + w.slots, 0),
    workers: workers.length, completed_total: counters.finished + counters.failed + counters.cancelled + counters.timed_out,
    failed_total: counters.failed };
  samples.push(s);
  if (samples.length > 600) samples.shift();
  return s;
}
// synthetic past so the chart has a shape right away
for (let k = 120; k > 0; k--) {
  const base = sample();
  base.t -= k;
  base.queued += Math.round(20 * Math.sin(k / 15));
  base.completed_total = Math.max(0, base.completed_total - k);
  base.failed_total = Math.max(0, base.failed_total - Math.floor(k / 50));
}

const pubWorker = ({ connected_at, ...w }) => ({ ...w, connected_s: now() - connected_at });
const pubTask = ({ attempts, submitted, startedAt, ...t }) => ({ ...t, bars: t.bars.map(({ started, ...b }) => b) });
function page(list, req) {
  const offset = Math.max(0, Number(req.get('offset') || 0) | 0);
  const limit = Math.min(1000, Math.max(1, Number(req.get('limit') || 100) | 0));
  return { items: list.slice(offset, offset + limit), total: list.length, offset, limit };
}

let streams = new Set(), dropUntil = 0;
setInterval(() => {
  const data = JSON.stringify({ status: status(), sample: sample() });
  for (const res of streams) {
    res.write(`event: status\ndata: ${data}\n\n`);
    if (Math.random() < 0.2) res.write(': keepalive\n\n');
  }
}, 1000);

function send(res, code, body) {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(text);
}
const server = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  const q = u.searchParams;
  switch (u.pathname) {
    case '/':
    case '/index.html':
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      return res.end(fs.readFileSync(PAGE));
    case '/api/status': return send(res, 200, status());
    case '/api/history': return send(res, 200, { interval_s: 1, samples });
    case '/api/workers': {
      const p = page(workers, q);
      return send(res, 200, { workers: p.items.map(pubWorker), total: p.total, offset: p.offset, limit: p.limit });
    }
    case '/api/applications': {
      const list = APPS.map(a => {
        const mine = tasks.filter(t => t.application_id === a.application_id);
        return { ...a, queued: mine.filter(t => t.state === 'queued').length, running: mine.filter(t => t.state === 'running').length,
          done: mine.filter(t => t.state === 'finished').length, tasks: mine.length };
      });
      const p = page(list, q);
      return send(res, 200, { applications: p.items, total: p.total, offset: p.offset, limit: p.limit });
    }
    case '/api/tasks': {
      const app = q.get('application_id') || '', st = q.get('state') || '', w = q.get('worker') || '';
      const list = tasks.filter(t => (!app || t.application_id === app) && (!w || t.worker === w) &&
        (!st || (st === 'done' ? TERMINAL.has(t.state) : t.state === st)));
      const p = page(list, q);
      return send(res, 200, { tasks: p.items.map(pubTask), total: p.total, offset: p.offset, limit: p.limit });
    }
    case '/api/task': {
      const t = tasks.find(x => x.service_id === q.get('id'));
      if (!t) return send(res, 404, { error: 'unknown task: ' + q.get('id') });
      return send(res, 200, { ...pubTask(t), attempts: t.attempts });
    }
    case '/api/worker': {
      const w = workers.find(x => x.name === q.get('name'));
      if (!w) return send(res, 404, { error: 'unknown worker: ' + q.get('name') });
      return send(res, 200, { ...pubWorker(w), tasks: tasks.filter(t => t.worker === w.name && t.state === 'running').map(pubTask) });
    }
    case '/api/failures': {
      const limit = Math.max(1, Number(q.get('limit') || 50) | 0);
      return send(res, 200, { failures: failures.slice(0, limit) });
    }
    case '/events': {
      if (now() < dropUntil) { res.writeHead(503); return res.end(); }
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
      res.write(': hello\n\n');
      streams.add(res);
      req.on('close', () => streams.delete(res));
      return;
    }
    case '/_mock/drop': {
      dropUntil = now() + Number(q.get('seconds') || 5);
      for (const s of streams) s.destroy();
      streams.clear();
      return send(res, 200, { dropped_until: dropUntil });
    }
    default: return send(res, 404, { error: 'not found: ' + u.pathname });
  }
});
server.listen(PORT, '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}/`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
