// The operator dashboard: the live ingest path (server-sent events from
// /fleet/live), consumption by utility and region, data quality (VEE),
// alarms, bill runs and payments by status.

import * as api from './api.js';
import { h, notice, errorNotice, announce, table, anyView, busy, fmtNum, fmtBytes, fmtTime } from './dom.js';
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
  const status = h('p', { class: 'muted', id: 'live-status', role: 'status' }, 'Connecting…');
  const charts = h('div', { class: 'grid' });
  el.replaceChildren(status, tiles, charts);
  const set = (id, v) => { document.getElementById(id).textContent = v; };
  const es = new EventSource(`${api.PREFIX}/fleet/live`);
  let last = 0;
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
      charts.replaceChildren(
        barChart({ title: 'Readings per second by utility', unit: 'readings/s', points: UTILITIES.map((u) => ({ label: u, value: s.readings_per_second_by_utility[u] || 0 })), width: 420 }),
        lineChart({ title: 'Readings per second, last minute', unit: 'readings/s', values: history.map((x) => x.rate), labels: history.map((x) => fmtTime(x.at)), width: 420 }));
    }
  });
  es.addEventListener('error', () => {
    status.textContent = es.readyState === EventSource.CLOSED ? 'The live feed stopped. Reload the page to reconnect.' : 'Reconnecting…';
  });
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

async function alarms(el) {
  const load = () => fill(el, 'Alarms', async () => {
    const items = api.items(await api.get('/alarms?limit=100'));
    const keys = [...new Set(items.flatMap((a) => Object.keys(a)))];
    return table('Alarms', [...keys.map((k) => ({ key: k, label: k.replace(/_/g, ' ') })), {
      key: 'ack', label: 'Action', render: (a) => {
        if (a.acked_at || a.acknowledged_at || a.acknowledged) return 'acknowledged';
        const b = h('button', { type: 'button', class: 'secondary' }, `Acknowledge alarm ${a.id}`);
        b.addEventListener('click', () => busy(b, async () => {
          try { await api.post(`/alarms/${a.id}/ack`); announce(`Alarm ${a.id} acknowledged`); load(); } catch (e) { el.prepend(errorNotice(e, 'Acknowledging')); }
        }));
        return b;
      },
    }], items, 'No alarms.');
  });
  load();
}

async function generic(el, what, path, caption) {
  await fill(el, what, async () => anyView(caption, await api.get(path), 'Nothing yet.'));
}

async function paymentsByStatus(el) {
  await fill(el, 'Payments by status', async () => {
    const data = await api.get('/payments-stats?hours=24');
    const rows = data.states || api.items(data);
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
  generic(el['bill-runs'], 'Bill runs', '/bill-runs?limit=20', 'Bill runs and their outcome');
  paymentsByStatus(el.payments);
  generic(el.fleet, 'Fleet statistics', '/fleet/stats', 'Fleet');
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
