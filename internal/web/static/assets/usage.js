// Usage series of an account for the charts: the API's points (one per
// meter, channel and step) reduced to one value per period and utility.

import * as api from './api.js';

// The register each utility bills on; other channels of the same meter
// (tariff registers, export) would count the same energy twice.
export const PRIMARY = { electricity: '1-0:1.8.0', water: '8-0:1.0.0', gas: '7-0:3.0.0' };
export const UNIT = { electricity: 'kWh', water: 'm³', gas: 'm³' };

export const PERIODS = {
  hour: { label: 'By hour, last 48 hours', step: '1h' },
  day: { label: 'By day, last 31 days', step: '1d' },
  month: { label: 'By month, last 12 months', step: '1mo' },
};

const iso = (d) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

function range(period, now) {
  const to = new Date(now);
  const from = new Date(now);
  if (period === 'hour') {
    to.setUTCMinutes(60, 0, 0);
    from.setTime(to.getTime() - 48 * 3600e3);
  } else if (period === 'day') {
    to.setUTCHours(24, 0, 0, 0);
    from.setTime(to.getTime() - 31 * 86400e3);
  } else {
    to.setUTCHours(24, 0, 0, 0);
    from.setUTCFullYear(to.getUTCFullYear() - 1, to.getUTCMonth(), 1);
    from.setUTCHours(0, 0, 0, 0);
  }
  return { from: iso(from), to: iso(to) };
}

// pick keeps the primary register's points when there are any, else all.
function pick(points, utility) {
  const own = points.filter((p) => p.utility === utility);
  const primary = own.filter((p) => p.channel === PRIMARY[utility]);
  return primary.length ? primary : own;
}

function sumBy(points, key) {
  const m = new Map();
  for (const p of points) {
    const k = key(p);
    m.set(k, (m.get(k) || 0) + p.quantity);
  }
  return m;
}

function label(period, t, tz) {
  const d = new Date(t);
  const o = { timeZone: tz };
  if (period === 'hour') {
    return {
      label: d.toLocaleString('en-GB', { ...o, weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' }),
      short: d.toLocaleString('en-GB', { ...o, hour: '2-digit', minute: '2-digit' }),
    };
  }
  if (period === 'day') {
    return { label: d.toLocaleDateString('en-GB', { ...o, weekday: 'short', day: 'numeric', month: 'short' }), short: d.toLocaleDateString('en-GB', { ...o, day: 'numeric', month: 'short' }) };
  }
  return { label: d.toLocaleDateString('en-GB', { ...o, month: 'long', year: 'numeric' }), short: d.toLocaleDateString('en-GB', { ...o, month: 'short' }) };
}

// load returns {meters, utilities, series: {utility: [{label, short, time,
// value}]}} for an account and period. Months come from the API's step=1mo,
// which sums days into calendar months of the account's time zone.
export async function load(account, period, now = Date.now()) {
  const tz = account.time_zone || undefined;
  const { from, to } = range(period, now);
  const data = await api.get(`/accounts/${account.id}/usage?step=${PERIODS[period].step}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  const series = {};
  const utilities = [...new Set((data.meters || []).map((m) => m.utility))];
  for (const u of Object.keys(PRIMARY)) {
    if (!utilities.includes(u)) continue;
    const byTime = sumBy(pick(data.points || [], u), (p) => p.time);
    series[u] = [...byTime.entries()].sort(([a], [b]) => Date.parse(a) - Date.parse(b))
      .map(([t, v]) => ({ time: t, value: round(v), ...label(period, t, tz) }));
  }
  return { meters: data.meters || [], utilities: Object.keys(series), series };
}

// round drops the float noise of sums (quantities are exact thousandths).
const round = (v) => Math.round(v * 1e6) / 1e6;
