// SVG charts drawn from data, with a text alternative: each chart is an
// image with a title and a summary for screen readers, and its figures are
// also in a table under a disclosure. No library: see docs/web.md.

import { h, s, newID, fmtNum, table } from './dom.js';

const H = 260;
const M = { top: 28, right: 12, bottom: 44, left: 60 };
let W = 720;

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function frame(title, summaryText, drawn, tableEl) {
  const tid = newID('chart-title');
  const did = newID('chart-desc');
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${tid} ${did}`, class: 'chart' },
    s('title', { id: tid }, title), s('desc', { id: did }, summaryText), drawn);
  return h('figure', { class: W < 720 ? 'chart narrow' : 'chart' },
    h('figcaption', {}, title),
    svg,
    h('p', { class: 'muted chart-summary' }, summaryText),
    h('details', {}, h('summary', {}, 'Show the figures as a table'), tableEl));
}

function yAxis(max, unit) {
  const plotH = H - M.top - M.bottom;
  const out = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = M.top + plotH - (plotH * i) / 4;
    out.push(s('line', { class: i ? 'grid-line' : 'axis', x1: M.left, x2: W - M.right, y1: y, y2: y }));
    out.push(s('text', { x: M.left - 6, y: y + 4, 'text-anchor': 'end' }, fmtNum(v, 2)));
  }
  out.push(s('text', { x: M.left, y: 14, 'text-anchor': 'start', class: 'unit' }, unit || ''));
  return out;
}

// barChart draws points [{label, value, time?}] as bars. cls colours the
// bars (a utility name).
export function barChart({ title, unit, points, cls = 'other', empty = 'No data for this period.', width = 720 }) {
  W = width;
  if (!points.length) return h('p', { class: 'muted chart-empty' }, `${title}: ${empty}`);
  const max = niceMax(Math.max(...points.map((p) => p.value)));
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const step = plotW / points.length;
  const bw = Math.max(1, step * 0.8);
  const every = Math.ceil(points.length / 12);
  const total = points.reduce((a, p) => a + p.value, 0);
  const top = points.reduce((a, p) => (p.value > a.value ? p : a), points[0]);
  const bars = points.map((p, i) => {
    const bh = (plotH * p.value) / max;
    const x = M.left + i * step + (step - bw) / 2;
    return s('rect', {
      class: `bar ${cls}`, x: x.toFixed(2), y: (M.top + plotH - bh).toFixed(2), width: bw.toFixed(2), height: bh.toFixed(2),
      'data-value': String(p.value), 'data-time': p.time || p.label,
    }, s('title', {}, `${p.label}: ${fmtNum(p.value)} ${unit}`));
  });
  const labels = points.map((p, i) => (i % every ? null : s('text', {
    x: (M.left + i * step + step / 2).toFixed(2), y: H - M.bottom + 16, 'text-anchor': 'middle',
  }, p.short || p.label)));
  const summary = `${points.length} bars. Total ${fmtNum(total)} ${unit}; highest ${fmtNum(top.value)} ${unit} at ${top.label}.`;
  const tbl = table(title, [
    { key: 'label', label: 'Period' },
    { key: 'value', label: `Usage (${unit})`, num: true, render: (r) => fmtNum(r.value) },
  ], points);
  return frame(title, summary, [yAxis(max, unit), bars, labels], tbl);
}

// lineChart draws a series of numbers, oldest first.
export function lineChart({ title, unit, values, labels, width = 720 }) {
  W = width;
  if (!values.length) return h('p', { class: 'muted chart-empty' }, `${title}: no data yet.`);
  const max = niceMax(Math.max(...values));
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const dx = values.length > 1 ? plotW / (values.length - 1) : 0;
  const pts = values.map((v, i) => `${(M.left + i * dx).toFixed(1)},${(M.top + plotH - (plotH * v) / max).toFixed(1)}`);
  const last = values[values.length - 1];
  const summary = `Latest ${fmtNum(last, 1)} ${unit}; highest ${fmtNum(Math.max(...values), 1)} ${unit} over the last ${values.length} samples.`;
  const rows = values.map((v, i) => ({ label: labels ? labels[i] : String(i + 1), value: v }));
  const tbl = table(title, [{ key: 'label', label: 'Time' }, { key: 'value', label: unit, num: true, render: (r) => fmtNum(r.value, 1) }], rows.slice(-20));
  return frame(title, summary, [yAxis(max, unit), s('polyline', { class: 'line', points: pts.join(' ') })], tbl);
}
