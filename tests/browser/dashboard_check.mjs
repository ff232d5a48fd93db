// End-to-end check of the lrts dashboard page in headless Chromium (Debian's /usr/bin/chromium).
//
//   node dashboard_check.mjs --url http://127.0.0.1:PORT/ --worker NAME --error-text TEXT \
//        --screenshot OUT.png [--task SERVICE_ID] [--timeout-s 60]
//
// Every check waits on a condition with a deadline (--timeout-s each); there are no fixed sleeps.
// Prints "ok: ..." per check and exits 0, or "FAIL: ..." and exits 1.
import { chromium } from 'playwright-core';

function parseArgs(argv) {
  const o = { timeoutS: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => {
      if (i + 1 >= argv.length) usage(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--url') o.url = v();
    else if (a === '--worker') o.worker = v();
    else if (a === '--error-text') o.errorText = v();
    else if (a === '--screenshot') o.screenshot = v();
    else if (a === '--task') o.task = v();
    else if (a === '--timeout-s') o.timeoutS = Number(v());
    else usage(`unknown argument ${a}`);
  }
  if (!o.url || !o.worker || !o.errorText || !o.screenshot) usage('--url, --worker, --error-text and --screenshot are required');
  if (!(o.timeoutS > 0)) usage('--timeout-s must be a positive number');
  return o;
}
function usage(msg) {
  console.log(`FAIL: ${msg}`);
  console.error(`usage: node dashboard_check.mjs --url URL --worker NAME --error-text TEXT --screenshot OUT.png [--task ID] [--timeout-s 60]`);
  process.exit(1);
}

const opt = parseArgs(process.argv.slice(2));
const T = opt.timeoutS * 1000;
class CheckFailed extends Error {}
const fail = msg => { throw new CheckFailed(msg); };
const ok = msg => console.log('ok: ' + msg);
const isTimeout = e => e && e.name === 'TimeoutError';
const short = s => { s = String(s ?? ''); return s.length > 300 ? s.slice(0, 300) + '…' : s; };

// Hard stop in case something hangs outside a deadline (for example the browser itself).
const watchdog = setTimeout(() => { console.log('FAIL: watchdog: the whole check took too long'); process.exit(1); }, 6 * T + 30000);
watchdog.unref();

let browser;
const pageErrors = [], consoleErrors = [];
try {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-background-networking'],
    timeout: T,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  page.on('pageerror', e => pageErrors.push(e.message || String(e)));
  page.on('console', m => { if (m.type() === 'error') consoleErrors.push(`${m.text()} ${m.location().url || ''}`.trim()); });

  const resp = await page.goto(opt.url, { waitUntil: 'domcontentloaded', timeout: T }).catch(e => fail(`page load: ${String(e.message).split('\n')[0]}`));
  if (!resp || !resp.ok()) fail(`page load: HTTP ${resp ? resp.status() : 'no response'} for ${opt.url}`);

  // (a) the worker shows up in the workers table (paging through it if the cluster has many workers)
  await checkWorkerRow(page);

  // (b) a progress bar in the tasks table advances between two observations
  await checkBarAdvances(page);

  // (c) the error text appears in the tasks table or in the failures list
  await checkErrorText(page);

  // the predicted finish card is filled from the status answer's estimate
  await page.waitForFunction(() => {
    const c = document.querySelector('#card-finish');
    return c && c.querySelector('.label').textContent === 'Predicted finish' &&
      c.querySelector('.value').textContent !== '–';
  }, null, { timeout: T, polling: 100 }).catch(e => fail(`predicted finish card: ${String(e.message).split('\n')[0]}`));
  ok('the predicted finish card shows ' + await page.textContent('#card-finish .value'));

  // no horizontal scrolling for the overview at 1280x800
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  if (overflow > 0) fail(`overview fits 1280px: page is ${overflow}px wider than the viewport`);
  ok('overview fits 1280x800 without horizontal scrolling');

  // (e) screenshot of the overview
  await page.screenshot({ path: opt.screenshot, fullPage: true, timeout: T });
  ok(`screenshot saved to ${opt.screenshot}`);

  // optional: the task detail view shows its bars or its error
  if (opt.task) await checkTaskDetail(page);

  // (d) no uncaught page errors, no console errors, over the whole run
  if (pageErrors.length) fail(`no page errors: ${pageErrors.length} uncaught: ${short(pageErrors.join(' | '))}`);
  if (consoleErrors.length) fail(`no console errors: ${consoleErrors.length} logged: ${short(consoleErrors.join(' | '))}`);
  ok('no uncaught page errors and no console errors');

  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(e instanceof CheckFailed ? `FAIL: ${e.message}` : `FAIL: unexpected error: ${e && e.stack || e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}

// Waits for the worker's row on the visible page; while it is not there, steps through the pages
// (Next until the last page, then Prev back to the first), until the deadline.
async function checkWorkerRow(page) {
  const deadline = Date.now() + T;
  const left = () => Math.max(1, deadline - Date.now());
  const row = page.locator(`#workers-table tr[data-worker="${opt.worker.replace(/["\\]/g, '\\$&')}"]`).first();
  const pager = page.locator('.pager[data-for="workers"]');
  let dir = 'next';
  while (true) {
    try {
      // rows are drawn together with the pager text, so a page other than the first needs no long wait
      const first = !(await pager.locator('[data-act="prev"]').isEnabled());
      await row.waitFor({ state: 'attached', timeout: Math.min(first ? 3000 : 300, left()) });
      ok(`workers table shows ${opt.worker}`);
      return;
    } catch (e) {
      if (!isTimeout(e)) throw e;
    }
    if (Date.now() >= deadline) break;
    let btn = pager.locator(`[data-act="${dir}"]`);
    if (!(await btn.isEnabled())) { dir = dir === 'next' ? 'prev' : 'next'; btn = pager.locator(`[data-act="${dir}"]`); }
    if (!(await btn.isEnabled())) continue;                  // a single page: just keep waiting
    const before = await pager.locator('.range').textContent();
    await btn.click({ timeout: left() });
    await page.waitForFunction(b => document.querySelector('.pager[data-for="workers"] .range').textContent !== b,
      before, { timeout: left(), polling: 100 }).catch(e => { if (!isTimeout(e)) throw e; });
  }
  const seen = await page.$$eval('#workers-table tr[data-worker]', rs => rs.slice(0, 20).map(r => r.dataset.worker)).catch(() => []);
  fail(`workers table shows ${opt.worker}: not seen within ${opt.timeoutS}s; rows on the last page looked at: ${short(JSON.stringify(seen))}`);
}

async function setStateFilter(page, state) {
  await page.selectOption('#state-filter', state, { timeout: T });
}

// Picks a bar that can still grow (count < total, or no total), then waits until that same bar of the same
// task (same data-bar and data-attempt) shows a larger data-count. If the task leaves the visible page before
// that, it picks another one, until the deadline. Falls back to the "running" filter if page 1 has no open bar.
async function checkBarAdvances(page) {
  const deadline = Date.now() + T;
  const left = () => Math.max(1, deadline - Date.now());
  const findOpenBar = ms => page.waitForFunction(() => {
    for (const tr of document.querySelectorAll('#tasks-table tr[data-task]')) {
      for (const b of tr.querySelectorAll('.bar')) {
        const c = Number(b.dataset.count), t = b.dataset.total === '' ? Infinity : Number(b.dataset.total);
        if (b.dataset.phase !== 'done' && c < t) return { task: tr.dataset.task, bar: b.dataset.bar, attempt: b.dataset.attempt, count: c };
      }
    }
    return null;
  }, null, { timeout: Math.max(1, ms), polling: 100 }).then(h => h.jsonValue());

  let cand = null, filtered = false, last = 'no bar seen';
  while (Date.now() < deadline) {
    try {
      // Give the default view a few seconds; a big cluster's first page may hold only finished tasks.
      cand = await findOpenBar(filtered ? left() : Math.min(5000, left()));
    } catch (e) {
      if (!isTimeout(e)) throw e;
      if (!filtered) { filtered = true; await setStateFilter(page, 'running'); continue; }
      break;
    }
    let res;
    try {
      res = await page.waitForFunction(c => {
        const tr = [...document.querySelectorAll('#tasks-table tr[data-task]')].find(r => r.dataset.task === c.task);
        const b = tr && [...tr.querySelectorAll('.bar')].find(x => x.dataset.bar === c.bar && x.dataset.attempt === c.attempt);
        if (!b) return { gone: true };
        const n = Number(b.dataset.count);
        return n > c.count ? { count: n } : false;
      }, cand, { timeout: left(), polling: 100 }).then(h => h.jsonValue());
    } catch (e) {
      if (!isTimeout(e)) throw e;
      last = `task ${cand.task} bar ${cand.bar} stayed at data-count=${cand.count}`;
      break;
    }
    if (res.gone) { last = `task ${cand.task} left the page before its bar moved`; continue; }
    ok(`progress bar of task ${cand.task} advanced (${cand.count} -> ${res.count})`);
    return;
  }
  const seen = await page.$$eval('#tasks-table .bar', bs => bs.slice(0, 5).map(b => `${b.dataset.count}/${b.dataset.total}(${b.dataset.phase})`)).catch(() => []);
  fail(`a tasks-table bar advances: not within ${opt.timeoutS}s; ${last}; first bars: ${JSON.stringify(seen)}`);
}

// Looks for the text (as text, so markup in it must have been escaped) in .task-error inside the tasks table,
// or in #failures; if it is not there after a few seconds, switches the state filter to "failed".
async function checkErrorText(page) {
  const deadline = Date.now() + T;
  const find = ms => page.waitForFunction(text => {
    const els = [...document.querySelectorAll('#tasks-table .task-error, #failures li')];
    const hit = els.find(e => e.textContent.includes(text));
    return hit ? (hit.closest('#failures') ? 'failures list' : 'tasks table') : false;
  }, opt.errorText, { timeout: Math.max(1, ms), polling: 100 }).then(h => h.jsonValue());
  let where;
  try {
    where = await find(Math.min(5000, deadline - Date.now()));
  } catch (e) {
    if (!isTimeout(e)) throw e;
    await setStateFilter(page, 'failed');
    try { where = await find(deadline - Date.now()); } catch (e2) {
      if (!isTimeout(e2)) throw e2;
      const seen = await page.$$eval('#tasks-table .task-error, #failures .fail-error', es => es.slice(0, 5).map(e => e.textContent)).catch(() => []);
      fail(`error text ${JSON.stringify(opt.errorText)} shown: not within ${opt.timeoutS}s; errors seen: ${short(JSON.stringify(seen))}`);
    }
  }
  ok(`error text ${JSON.stringify(opt.errorText)} shown as text in the ${where}`);
}

async function checkTaskDetail(page) {
  await page.evaluate(id => { location.hash = '#/task/' + encodeURIComponent(id); }, opt.task);
  try {
    const what = await page.waitForFunction(id => {
      const d = document.querySelector('#detail');
      if (!d || d.hidden) return false;
      const p = [...d.querySelectorAll('[data-task]')].find(e => e.dataset.task === id);
      if (!p) return false;
      const bars = p.querySelectorAll('.bar').length, err = p.querySelector('.task-error');
      return bars || err ? `${bars} bar(s)${err ? ', error: ' + err.textContent.slice(0, 80) : ''}` : false;
    }, opt.task, { timeout: T, polling: 100 }).then(h => h.jsonValue());
    ok(`task view #/task/${opt.task} shows ${what}`);
  } catch (e) {
    if (!isTimeout(e)) throw e;
    const text = await page.$eval('#detail', d => d.innerText).catch(() => '');
    fail(`task view #/task/${opt.task}: no bars or error within ${opt.timeoutS}s; it shows: ${short(text)}`);
  }
  const shot = opt.screenshot.replace(/(\.png)?$/i, '-task.png');
  await page.screenshot({ path: shot, fullPage: true, timeout: T });
  ok(`task view screenshot saved to ${shot}`);
  await page.evaluate(() => { location.hash = '#/'; });
}
