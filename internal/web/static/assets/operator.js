// The operator dashboard: the live ingest path (server-sent events from
// /fleet/live), consumption by utility and region, data quality (VEE),
// alarms, bill runs and payments by status.

import * as api from './api.js';
import { h, field, notice, errorNotice, announce, table, busy, fmtNum, fmtBytes, fmtTime } from './dom.js';
import { barChart, lineChart } from './chart.js';
import { signInView } from './signin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');

const SECTIONS = [
  ['live', 'Live'], ['regions', 'Consumption'], ['vee', 'Data quality'], ['alarms', 'Alarms'],
  ['bill-runs', 'Bill runs'], ['payments', 'Payments'], ['fleet', 'Fleet'],
];

function section(id, title, ...body) {
  return h('section', { id, 'aria-labelledby': `${id}-h` }, h('h2', { id: `${id}-h` }, title), ...body);
}

async function fill(el, what, fn) {
  try {
    el.replaceChildren(...[await fn()].flat().filter(Boolean));
  } catch (e) {
    el.replaceChildren(errorNotice(e, what));
  }
}

// --- live ---

const UTILITIES = ['electricity', 'water', 'gas'];
const history = [];

function tile(id, label) {
  return h('div', { class: 'tile' }, h('p', { class: 'label', id: `${id}-label` }, label),
    h('p', { class: 'value', id, 'aria-labelledby': `${id}-label` }, '–'));
}

function live(el) {
  const tiles = h('div', { class: 'tiles' },
    tile('live-connected', 'Connected meters'), tile('live-rate', 'Readings per second'), tile('live-total', 'Readings since start'),
    tile('live-lag', 'Ingest lag'), tile('live-lag-records', 'Records waiting for the stores'), tile('live-pending', 'Journal pending'));
  const status = h('p', { class: 'muted', id: 'live-status' }, 'Connecting…');
  const charts = h('div', { class: 'grid' });
  el.replaceChildren(status, tiles, charts);
  const set = (id, v) => { document.getElementById(id).textContent = v; };
  let last = 0;
  let retries = 0;
  // EventSource reconnects by itself when a stream ends (the server ends
  // each at its request timeout); when the server refuses a connection it
  // gives up, and we open a new one after a growing pause.
  const connect = () => {
    const es = new EventSource(`${api.PREFIX}/fleet/live`);
    es.addEventListener('open', () => { retries = 0; });
    es.addEventListener('snapshot', (ev) => {
      const s = JSON.parse(ev.data);
      set('live-connected', fmtNum(s.connected_meters, 0));
      set('live-rate', fmtNum(s.readings_per_second, 1));
      set('live-total', fmtNum(s.readings_total, 0));
      document.getElementById('live-total').dataset.value = String(s.readings_total);
      set('live-lag', `${fmtNum(s.ingest_lag_seconds, 2)} s`);
      set('live-lag-records', fmtNum(s.ingest_lag_records, 0));
      set('live-pending', fmtBytes(s.journal_pending_bytes));
      status.textContent = `Live, updated ${fmtTime(s.at)}`;
      history.push({ at: s.at, rate: s.readings_per_second });
      if (history.length > 60) history.shift();
      // Redraw the charts at most every 5 s: they change slowly and screen
      // readers should not hear them every second.
      if (Date.now() - last > 5000 || history.length < 3) {
        last = Date.now();
        const by = s.readings_per_second_by_utility || {};
        charts.replaceChildren(
          barChart({ title: 'Readings per second by utility', unit: 'readings/s', points: UTILITIES.map((u) => ({ label: u, value: by[u] || 0 })), width: 420 }),
          lineChart({ title: 'Readings per second, last minute', unit: 'readings/s', values: history.map((x) => x.rate), labels: history.map((x) => fmtTime(x.at)), width: 420 }));
      }
    });
    es.addEventListener('error', () => {
      status.textContent = 'Reconnecting…';
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, Math.min(60000, 2000 * 2 ** retries++));
    });
  };
  connect();
}

// --- the other sections ---

async function regions(el) {
  const hours = h('select', { id: 'regions-hours' }, [[24, 'Last 24 hours'], [168, 'Last 7 days'], [720, 'Last 30 days']].map(([v, t]) => h('option', { value: v }, t)));
  const out = h('div');
  const load = () => fill(out, 'Consumption by region', async () => {
    const data = await api.get(`/fleet/regions?hours=${hours.value}`);
    const items = data.items || [];
    const byUtility = UTILITIES.map((u) => {
      const rows = items.filter((x) => x.utility === u);
      if (!rows.length) return null;
      return barChart({ title: `${u[0].toUpperCase() + u.slice(1)} by region`, unit: rows[0].unit, cls: u, points: rows.map((r) => ({ label: r.region || '(no region)', value: r.quantity })), width: 420 });
    });
    return [
      h('div', { class: 'grid' }, byUtility),
      h('div', { id: 'regions-table' }, table('Consumption by region and utility', [
        { key: 'region', label: 'Region', render: (r) => r.region || '(no region)' },
        { key: 'utility', label: 'Utility' },
        { key: 'quantity', label: 'Consumption', num: true, render: (r) => `${fmtNum(r.quantity)} ${r.unit}` },
        { key: 'meters', label: 'Meters', num: true },
      ], items, 'No consumption in this window.')),
    ];
  });
  hours.addEventListener('change', load);
  el.replaceChildren(h('div', { class: 'field' }, h('label', { for: 'regions-hours' }, 'Window'), hours), out);
  load();
}

async function vee(el) {
  await fill(el, 'VEE exceptions', async () => {
    const items = api.items(await api.get('/vee/exceptions?limit=100'));
    return table('Validation exceptions by meter and rule', [
      { key: 'meter_id', label: 'Meter' }, { key: 'rule', label: 'Rule' }, { key: 'channel', label: 'Channel' },
      { key: 'count', label: 'Count', num: true }, { key: 'last_at', label: 'Last', render: (x) => fmtTime(x.last_at) },
      { key: 'last_detail', label: 'Detail' },
    ], items, 'No exceptions.');
  });
}

// --- alarms ---

const KIND_TEXT = {
  meter_offline: 'Meter offline', vee_rate: 'Many VEE exceptions', ingest_lag: 'Ingest lag',
  store_down: 'Store down', payment_failure_rate: 'Payments failing',
};

const ALARM_LISTS = [
  ['active', 'Active', 'No active alarms.'],
  ['acknowledged', 'Acknowledged, still open', 'No acknowledged alarms.'],
  ['cleared', 'History (cleared)', 'No cleared alarms yet.'],
];

// alarms shows the open alarms (active first, then acknowledged) and the
// recent history, each with its own list, and reloads them every 30 s.
function alarms(el) {
  const note = field('Note with an acknowledgement (optional)', { id: 'alarm-note', name: 'note', maxlength: 1000, autocomplete: 'off' });
  const refresh = h('button', { type: 'button', class: 'secondary', id: 'alarms-refresh' }, 'Refresh alarms');
  const status = h('div', { id: 'alarm-status' });
  const lists = Object.fromEntries(ALARM_LISTS.map(([st]) => [st, h('div', { id: `alarms-${st}`, 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'))]));
  el.replaceChildren(h('div', { class: 'row' }, note, h('p', {}, refresh)), status,
    ...ALARM_LISTS.map(([st, title]) => h('section', { 'aria-labelledby': `alarms-${st}-h` }, h('h3', { id: `alarms-${st}-h`, tabindex: '-1' }, title), lists[st])));
  const ack = (a, b) => busy(b, async () => {
    try {
      const done = await api.post(`/alarms/${a.id}/ack`, { note: document.getElementById('alarm-note').value.trim() });
      status.replaceChildren(notice('ok', `Acknowledged: ${KIND_TEXT[done.kind] || done.kind} ${done.subject}.`));
      announce(`Alarm ${a.id} acknowledged`);
      document.getElementById('alarm-note').value = '';
      await load();
      document.getElementById('alarms-active-h').focus();
    } catch (e) { status.replaceChildren(errorNotice(e, 'Acknowledging the alarm')); }
  });
  const columns = (st) => [
    { key: 'kind', label: 'Alarm', render: (a) => KIND_TEXT[a.kind] || a.kind },
    { key: 'subject', label: 'Subject', render: (a) => a.subject || '(fleet)' },
    { key: 'message', label: 'What', render: (a) => [a.message, (a.history || []).filter((x) => x.note).map((x) => h('span', { class: 'muted' }, h('br'), `Note: ${x.note}`))] },
    { key: 'raised_at', label: 'Raised', render: (a) => fmtTime(a.raised_at) },
    st === 'cleared' ? { key: 'cleared_at', label: 'Cleared', render: (a) => fmtTime(a.cleared_at) } : { key: 'last_seen_at', label: 'Last seen', render: (a) => fmtTime(a.last_seen_at) },
    st === 'active' ? { key: 'action', label: 'Action', render: (a) => {
      const b = h('button', { type: 'button', class: 'secondary', id: `ack-${a.id}` }, `Acknowledge ${KIND_TEXT[a.kind] || a.kind} ${a.subject}`.trim());
      b.addEventListener('click', () => ack(a, b));
      return b;
    } } : { key: 'acknowledged_at', label: 'Acknowledged', render: (a) => (a.acknowledged_at ? `${fmtTime(a.acknowledged_at)}${a.acknowledged_by ? ` by user ${a.acknowledged_by}` : ''}` : '') },
  ];
  const load = () => Promise.all(ALARM_LISTS.map(([st, title, empty]) => fill(lists[st], `${title} alarms`, async () => {
    const items = api.items(await api.get(`/alarms?state=${st}&limit=${st === 'cleared' ? 20 : 100}`));
    return table(`${title} alarms`, columns(st), items, empty, (a) => ({ 'data-alarm-id': String(a.id), 'data-state': a.state }));
  }).finally(() => lists[st].removeAttribute('aria-busy'))));
  refresh.addEventListener('click', () => busy(refresh, load));
  load();
  setInterval(load, 30000);
}

// --- fleet statistics and bill runs ---

async function fleetStats(el) {
  await fill(el, 'Fleet statistics', async () => {
    const s = await api.get('/fleet/stats');
    const byUtility = UTILITIES.map((u) => ({ label: u, value: (s.meters || []).filter((m) => m.utility === u && m.status === 'active').reduce((n, m) => n + m.count, 0) }));
    return [
      h('p', { class: 'muted' }, `As of ${fmtTime(s.at)}.`),
      h('div', { class: 'tiles', id: 'fleet-tiles' },
        stat('fleet-silent', `Silent for over ${duration(s.silent_after)}`, s.silent), stat('fleet-never', 'Never reported', s.never_reported),
        stat('fleet-reported', 'Meters reporting in the last hour', s.meters_reported_last_hour),
        stat('fleet-intervals', 'Intervals written in the last hour', s.intervals_last_hour)),
      h('div', { class: 'grid' },
        barChart({ title: 'Active meters by utility', unit: 'meters', points: byUtility, width: 420 }),
        h('div', {}, table('Meters by utility and status', [
          { key: 'utility', label: 'Utility' }, { key: 'status', label: 'Status' }, { key: 'count', label: 'Meters', num: true },
        ], s.meters || [], 'No meters provisioned.'))),
      table('VEE exceptions in the last 24 hours, by rule', [
        { key: 'rule', label: 'Rule' },
        { key: 'meters', label: 'Meter channels', num: true },
        { key: 'exceptions', label: 'Their exceptions, all time', num: true },
      ], s.vee_last_24h || [], 'No VEE exceptions in the last 24 hours.'),
    ];
  });
}

// duration shortens a Go duration such as 1h0m0s to 1h.
const duration = (d) => String(d || '').replace(/(\D)0m0s$/, '$1').replace(/(\D)0s$/, '$1');

function stat(id, label, value) {
  return h('div', { class: 'tile' }, h('p', { class: 'label', id: `${id}-label` }, label),
    h('p', { class: 'value', id, 'aria-labelledby': `${id}-label` }, fmtNum(value ?? 0, 0)));
}

const OUTCOME_CLASS = { succeeded: 'status-succeeded', failed: 'status-failed', partial: 'status-expired' };

async function billRuns(el) {
  await fill(el, 'Bill runs', async () => table('Bill runs, newest first', [
    { key: 'id', label: 'Run', render: (r) => `Run ${r.id}` },
    { key: 'as_of', label: 'As of', render: (r) => fmtTime(r.as_of) },
    { key: 'started_at', label: 'Started', render: (r) => fmtTime(r.started_at) },
    { key: 'finished_at', label: 'Finished', render: (r) => (r.finished_at ? fmtTime(r.finished_at) : 'running') },
    { key: 'accounts', label: 'Accounts', num: true },
    { key: 'bills_issued', label: 'Bills issued', num: true },
    { key: 'already_billed', label: 'Already billed', num: true },
    { key: 'nothing_to_bill', label: 'Nothing to bill', num: true },
    { key: 'adjustments', label: 'Adjustments', num: true },
    { key: 'failed', label: 'Failed', num: true },
    { key: 'outcome', label: 'Outcome', render: (r) => [h('span', { class: OUTCOME_CLASS[r.outcome] || null }, r.outcome), r.error ? h('span', { class: 'muted' }, h('br'), r.error) : null] },
  ], api.items(await api.get('/bill-runs?limit=20')), 'No bill runs yet.'));
}

async function paymentsByStatus(el) {
  await fill(el, 'Payments by status', async () => {
    const data = await api.get('/payments-stats?hours=24');
    const rows = data.states || [];
    const byState = new Map();
    for (const r of rows) byState.set(r.state, (byState.get(r.state) || 0) + Number(r.count || 0));
    return [
      h('p', { class: 'muted' }, `Payments created since ${fmtTime(data.since)}.`),
      byState.size ? barChart({ title: 'Payments by status, last 24 hours', unit: 'payments', points: [...byState].map(([label, value]) => ({ label, value })), width: 560 }) : null,
      table('Payments by status and currency', [
        { key: 'state', label: 'Status' }, { key: 'currency', label: 'Currency' },
        { key: 'count', label: 'Payments', num: true }, { key: 'amount', label: 'Amount', num: true },
      ], rows, 'No payments in the last 24 hours.'),
    ];
  });
}

function dashboard() {
  nav.hidden = false;
  const out = h('button', { type: 'button', class: 'secondary', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', async () => { await api.signOut().catch(() => {}); location.reload(); });
  nav.replaceChildren(h('ul', {}, SECTIONS.map(([id, t]) => h('li', {}, h('a', { href: `#${id}` }, t))), h('li', {}, out)));
  const el = Object.fromEntries(SECTIONS.map(([id]) => [id, h('div', {}, h('p', { class: 'muted' }, 'Loading…'))]));
  main.replaceChildren(h('h1', {}, 'Operations'), ...SECTIONS.map(([id, t]) => section(id, t, el[id])));
  live(el.live);
  regions(el.regions);
  vee(el.vee);
  alarms(el.alarms);
  billRuns(el['bill-runs']);
  paymentsByStatus(el.payments);
  fleetStats(el.fleet);
}

async function start() {
  let user;
  try { user = await api.me(); } catch (e) { main.replaceChildren(errorNotice(e, 'The dashboard')); return; }
  if (!user) { signInView(main, 'Sign in to operations', () => start()); return; }
  if (user.role !== 'operator') {
    main.replaceChildren(h('h1', {}, 'Operators only'), notice('unavailable', 'This dashboard is for operators.'), h('p', {}, h('a', { href: '/' }, 'Go to your household portal')));
    return;
  }
  dashboard();
}

start();
