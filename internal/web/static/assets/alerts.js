// A household's alerts: the inbox, read marks, the live stream and the
// preferences (channels per kind, quiet hours).
//
// The inbox is kept here for the whole visit: GET /alerts fills it, and the
// server-sent events of /alerts/stream add to it as alerts are delivered.
// Every change redraws the header's "new" count and, when it is open, the
// alerts page. The browser's EventSource reconnects by itself after a
// dropped stream and sends Last-Event-ID, so the server replays what was
// missed; when the server refuses a connection (it is restarting, say)
// EventSource gives up, and we open a new one after a growing pause and
// read the inbox again, since a new EventSource has no Last-Event-ID.

import * as api from './api.js';
import { h, field, notice, errorNotice, announce, table, busy, fmtTime, section, slot, fill } from './dom.js';

// What each kind of alert is about, in the order the preferences list them.
export const KINDS = {
  bill_issued: 'A bill is issued',
  bill_upcoming: 'A bill is due in a few days',
  bill_overdue: 'A bill is unpaid past its due date',
  payment_confirm: 'A payment waits for your code',
  payment_succeeded: 'A payment went through',
  payment_failed: 'A payment did not go through',
  budget: 'The cost of the cycle reaches part of a budget',
  projected_over: 'The forecast for the cycle is above a budget',
  abnormal_usage: 'Usage today is well above usual',
  leak: 'A suspected water or gas leak',
  meter_silent: 'A meter has stopped reporting',
};

const CHANNELS = { inapp: 'In the portal', sms: 'By SMS' };

const inbox = {
  items: [], // newest first
  loaded: false,
  es: null,
  opened: false,
  retries: 0,
  timer: 0,
  stream: 'connecting', // connecting | live | reconnecting | off
};

export function unread() { return inbox.items.filter((a) => !a.read_at).length; }

// merge adds alerts to the inbox, replacing those it has (an alert sent
// twice, or one marked read), and redraws.
function merge(list) {
  const byID = new Map(inbox.items.map((a) => [a.id, a]));
  for (const a of list) byID.set(a.id, a);
  inbox.items = [...byID.values()].sort((a, b) => b.id - a.id);
  redraw();
}

async function loadInbox() {
  merge(api.items(await api.get('/alerts?limit=50')));
  inbox.loaded = true;
  redraw();
}

// badge is the header's count of unread alerts, inside the Alerts link.
export function badge() {
  const n = unread();
  return h('span', { id: 'alert-badge', class: 'badge', hidden: n === 0, 'data-count': String(n) }, `${n} new`);
}

function redraw() {
  const b = document.getElementById('alert-badge');
  if (b) b.replaceWith(badge());
  const list = document.getElementById('alert-list');
  if (list && inbox.loaded) {
    list.replaceChildren(alertTable());
    list.removeAttribute('aria-busy');
  }
  const st = document.getElementById('alert-stream-status');
  if (st) st.textContent = streamText();
}

function streamText() {
  return {
    connecting: 'Connecting to live alerts…',
    live: 'New alerts appear here as they happen.',
    reconnecting: 'Live alerts are reconnecting; the list may be behind for a moment.',
    off: 'This browser cannot show alerts live: reload the page to see new ones.',
  }[inbox.stream];
}

// startAlerts reads the inbox and opens the live stream, once per visit.
export function startAlerts() {
  loadInbox().catch(() => {});
  connect();
}

export function stopAlerts() {
  clearTimeout(inbox.timer);
  if (inbox.es) inbox.es.close();
  inbox.es = null;
}

function connect() {
  if (!window.EventSource) { inbox.stream = 'off'; redraw(); return; }
  if (inbox.es) return;
  const es = new EventSource(`${api.PREFIX}/alerts/stream`);
  inbox.es = es;
  es.addEventListener('open', () => {
    // After a reconnection, catch up with what the stream may have missed.
    if (inbox.opened) loadInbox().catch(() => {});
    inbox.opened = true;
    inbox.retries = 0;
    inbox.stream = 'live';
    redraw();
  });
  es.addEventListener('alert', (ev) => {
    let a;
    try { a = JSON.parse(ev.data); } catch { return; }
    const known = inbox.items.some((x) => x.id === a.id);
    merge([a]);
    if (!known) announce(`New alert: ${a.title}`);
  });
  es.addEventListener('error', () => {
    inbox.stream = 'reconnecting';
    if (es.readyState === EventSource.CLOSED) {
      inbox.es = null;
      const wait = Math.min(60000, 2000 * 2 ** inbox.retries++);
      inbox.timer = setTimeout(connect, wait);
    }
    redraw();
  });
}

async function markRead(a) {
  const done = await api.post(`/alerts/${a.id}/read`);
  merge([done]);
  announce(`Marked as read: ${a.title}`);
  const next = document.querySelector('#alert-list button.mark-read');
  (next || document.getElementById('alert-list-heading')).focus();
}

function alertTable() {
  return table('Your alerts, newest first', [
    { key: 'created_at', label: 'When', render: (a) => fmtTime(a.created_at) },
    { key: 'title', label: 'Alert', render: (a) => [h('strong', {}, a.title), h('br'), a.body] },
    { key: 'kind', label: 'About', render: (a) => KINDS[a.kind] || a.kind },
    { key: 'read', label: 'Read', render: (a) => {
      if (a.read_at) return `yes, ${fmtTime(a.read_at)}`;
      const b = h('button', { type: 'button', class: 'secondary mark-read', 'aria-label': `Mark as read: ${a.title}` }, 'Mark as read');
      b.addEventListener('click', () => busy(b, async () => {
        try { await markRead(a); } catch (e) { b.after(errorNotice(e, 'Marking the alert read')); }
      }));
      return h('span', { class: 'status-new' }, 'new ', b);
    } },
  ], inbox.items, 'No alerts yet.', (a) => ({ 'data-alert-id': String(a.id), 'data-read': a.read_at ? 'yes' : 'no' }));
}

// alertsPage shows the inbox, live, and the preferences.
export function alertsPage(main) {
  const list = h('div', { id: 'alert-list', 'aria-busy': inbox.loaded ? null : 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const prefs = slot();
  main.replaceChildren(h('h1', {}, 'Alerts'),
    h('p', { class: 'muted', id: 'alert-stream-status' }, streamText()),
    h('section', { 'aria-labelledby': 'alert-list-heading' }, h('h2', { id: 'alert-list-heading', tabindex: '-1' }, 'Inbox'), list),
    section('What we tell you about', prefs));
  if (inbox.loaded) redraw();
  loadInbox().catch((e) => { list.replaceChildren(errorNotice(e, 'Alerts')); list.removeAttribute('aria-busy'); });
  fill(prefs, 'Alert preferences', async () => preferencesForm(await api.get('/alert-preferences')));
}

function preferencesForm(p) {
  const status = h('div', { id: 'prefs-status' });
  const channels = p.channels || {};
  const box = (kind, ch) => h('input', {
    type: 'checkbox', id: `pref-${kind}-${ch}`, name: `${kind}:${ch}`,
    checked: (channels[kind] || []).includes(ch), 'aria-label': `${KINDS[kind]}: ${CHANNELS[ch].toLowerCase()}`,
  });
  const grid = h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, 'How each kind of alert reaches you'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Alert'), Object.values(CHANNELS).map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, Object.keys(KINDS).map((k) => h('tr', {}, h('th', { scope: 'row' }, KINDS[k]),
      Object.keys(CHANNELS).map((c) => h('td', {}, box(k, c))))))));
  const q = p.quiet_hours;
  const quietOn = h('input', { type: 'checkbox', id: 'quiet-on', name: 'quiet_on', checked: !!q });
  const start = field('From', { id: 'quiet-start', name: 'quiet_start', type: 'time', value: q ? q.start : '22:00' });
  const end = field('Until', { id: 'quiet-end', name: 'quiet_end', type: 'time', value: q ? q.end : '07:00' });
  const quiet = h('fieldset', { class: 'stack' }, h('legend', {}, 'Quiet hours'),
    h('p', { class: 'muted' }, `Texts that fall in quiet hours are held until they end; the portal shows alerts at once. Times are in ${p.time_zone || 'your local time'}.`),
    h('div', {}, quietOn, ' ', h('label', { for: 'quiet-on' }, 'Hold texts during quiet hours')),
    h('div', { class: 'row' }, start, end));
  const save = h('button', { type: 'submit', id: 'prefs-save' }, 'Save preferences');
  const form = h('form', { class: 'stack wide', id: 'prefs-form' },
    h('p', {}, 'Choose how each kind of alert reaches you. With neither box ticked we do not tell you about it.'), grid, quiet, h('p', {}, save), status);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(save, async () => {
      const out = { channels: {}, quiet_hours: null };
      for (const k of Object.keys(KINDS)) out.channels[k] = Object.keys(CHANNELS).filter((c) => form.elements[`${k}:${c}`].checked);
      if (form.quiet_on.checked) out.quiet_hours = { start: form.quiet_start.value, end: form.quiet_end.value };
      try {
        await api.put('/alert-preferences', out);
        status.replaceChildren(notice('ok', 'Preferences saved.'));
        announce('Preferences saved');
      } catch (e) { status.replaceChildren(errorNotice(e, 'Saving preferences')); }
    });
  });
  return form;
}
