// Small DOM helpers: elements from data, tables, notices and formatting.
// Text always goes in as text nodes, never as HTML.

import { ApiError } from './api.js';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function h(tag, attrs, ...children) { return build(document.createElement(tag), attrs, children); }

export function s(tag, attrs, ...children) {
  return build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
}

let uid = 0;
export const newID = (p) => `${p}-${++uid}`;

// field is a labelled input.
export function field(label, attrs, hint) {
  const id = attrs.id || newID('f');
  const hintID = hint ? `${id}-hint` : null;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('span', { id: hintID, class: 'muted' }, hint) : null,
    h(attrs.tag || 'input', { ...attrs, tag: null, id, 'aria-describedby': hintID }));
}

export function notice(kind, ...text) {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...text);
}

// errorNotice explains a failed request: what the server cannot do right
// now is said so plainly, anything else shows the API's message.
export function errorNotice(err, what) {
  if (err instanceof ApiError && err.unavailable) {
    return notice('unavailable', `${what}: unavailable right now. ${err.message}`);
  }
  return notice('error', `${what}: ${err.message || err}`);
}

// announce says text through the page's polite live region.
export function announce(text) {
  const live = document.getElementById('announcer');
  if (live) { live.textContent = ''; setTimeout(() => { live.textContent = text; }, 50); }
}

export function fmtTime(v, tz) {
  if (!v) return '';
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toLocaleString('en-GB', { timeZone: tz || undefined, dateStyle: 'medium', timeStyle: 'short' });
}

export function fmtDate(v) {
  if (!v) return '';
  const d = new Date(/^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T12:00:00Z` : v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toLocaleDateString('en-GB', { dateStyle: 'medium', timeZone: 'UTC' });
}

export function fmtNum(n, digits = 3) {
  if (typeof n !== 'number') return String(n ?? '');
  return n.toLocaleString('en-GB', { maximumFractionDigits: digits });
}

// money shows an amount exactly as the API sent it (a decimal string).
export const money = (amount, currency) => `${amount ?? ''} ${currency || ''}`.trim();

export function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${fmtNum(n, i ? 1 : 0)} ${units[i]}`;
}

export function stateClass(v) { return `status-${String(v || '').toLowerCase()}`; }

// table renders rows under columns [{key, label, num, render(row)}];
// rowAttrs(row), when given, returns the attributes of a row.
export function table(caption, columns, rows, empty = 'Nothing to show.', rowAttrs) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : {}, columns.map((c, i) => {
      const v = c.render ? c.render(r) : display(r[c.key]);
      return i === 0 ? h('th', { scope: 'row' }, v) : h('td', { class: c.num ? 'num' : null }, v);
    }))))));
}

function display(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(v)) return fmtTime(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// section is a labelled part of a page with its heading.
export function section(title, ...body) {
  return h('section', { 'aria-label': title }, h('h2', {}, title), ...body);
}

// slot is a placeholder that fill replaces when its request returns.
export function slot(text = 'Loading…') {
  return h('div', { class: 'slot', 'aria-busy': 'true' }, h('p', { class: 'muted' }, text));
}

// fill puts what fn returns in el, or a notice of why it failed; el is
// aria-busy meanwhile.
export async function fill(el, what, fn) {
  el.setAttribute('aria-busy', 'true');
  try {
    const out = await fn();
    el.replaceChildren(...[out].flat().filter(Boolean));
  } catch (e) {
    el.replaceChildren(errorNotice(e, what));
  } finally {
    el.removeAttribute('aria-busy');
  }
}

// busy disables a button while fn runs.
export async function busy(button, fn) {
  button.disabled = true;
  try { return await fn(); } finally { button.disabled = false; }
}
