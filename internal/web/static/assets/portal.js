// The household portal: usage, this cycle's cost and budgets, bills,
// payments, auto-pay, payment methods, phones, alerts, exports. Pages are
// addressed by the URL fragment (#/bills/12), so the server serves one page
// and links can be shared.

import * as api from './api.js';
import { h, field, notice, errorNotice, announce, table, busy, money, fmtDate, fmtTime, stateClass, section, slot, fill } from './dom.js';
import { barChart } from './chart.js';
import { signInView } from './signin.js';
import * as usage from './usage.js';
import * as alerts from './alerts.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');

const state = { user: null, accounts: [], account: null, household: null };

const PAGES = [
  ['#/', 'Home'],
  ['#/bills', 'Bills'],
  ['#/payments', 'Payments'],
  ['#/autopay', 'Auto-pay'],
  ['#/methods', 'Payment methods'],
  ['#/phones', 'Phones'],
  ['#/alerts', 'Alerts'],
  ['#/exports', 'Downloads'],
  ['#/messages', 'Messages'],
];

function renderNav(current) {
  nav.hidden = false;
  const out = h('button', { type: 'button', class: 'secondary', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', async () => {
    alerts.stopAlerts();
    await api.signOut().catch(() => {});
    location.hash = '';
    location.reload();
  });
  nav.replaceChildren(h('ul', {},
    PAGES.map(([href, text]) => h('li', {}, h('a', { href, 'aria-current': href === current ? 'page' : null, id: href === '#/alerts' ? 'nav-alerts' : null },
      text, href === '#/alerts' ? [' ', alerts.badge()] : null))),
    h('li', {}, out)));
}

function accountPicker() {
  if (state.accounts.length < 2) return '';
  const sel = h('select', { id: 'account-select' }, state.accounts.map((a) => h('option', { value: a.id, selected: a.id === state.account.id }, a.number)));
  sel.addEventListener('change', () => { state.account = state.accounts.find((a) => String(a.id) === sel.value); route(); });
  return h('div', { class: 'field' }, h('label', { for: 'account-select' }, 'Account'), sel);
}

const cap = (u) => u[0].toUpperCase() + u.slice(1);

// --- home: cost this cycle, budgets, usage, premises ---

// household returns the signed-in household with its accounts and premises
// (read once per visit of the home page).
function household(fresh) {
  if (fresh || !state.household) state.household = api.get('/household');
  return state.household;
}

// supplied lists the utilities supplied to the account at its premises.
async function supplied(acc) {
  const hh = await household();
  const us = new Set();
  for (const p of hh.premises || []) {
    if (p.account_id !== acc.id) continue;
    for (const sp of p.service_points || []) us.add(sp.utility);
  }
  return Object.keys(usage.PRIMARY).filter((u) => us.has(u));
}

async function home() {
  const acc = state.account;
  const cost = slot();
  const chart = slot();
  const premises = slot();
  const controls = usageControls(() => drawUsage(chart));
  household(true).catch(() => {});
  main.replaceChildren(
    h('h1', {}, 'Your home'),
    h('p', { class: 'muted' }, `Account ${acc.number}`), accountPicker(),
    section('This cycle', cost),
    section('Usage', controls, chart),
    section('Where we supply you', premises));
  fill(cost, 'The cost of this cycle', () => costView(cost));
  fill(premises, 'Your premises', premisesView);
  drawUsage(chart);
}

const ui = { utility: '', period: 'hour' };

function usageControls(onChange) {
  const radio = (name, value, text, checked) => {
    const id = `${name}-${value}`;
    const input = h('input', { type: 'radio', name, id, value, checked });
    input.addEventListener('change', () => { ui[name] = value; onChange(); });
    return h('span', {}, input, ' ', h('label', { for: id }, text));
  };
  const utilities = h('fieldset', { class: 'choice', id: 'utility-choice' }, h('legend', {}, 'Utility'),
    Object.keys(usage.PRIMARY).map((u) => radio('utility', u, cap(u), ui.utility === u)));
  const periods = h('fieldset', { class: 'choice' }, h('legend', {}, 'Period'),
    Object.entries(usage.PERIODS).map(([p, v]) => radio('period', p, v.label, ui.period === p)));
  return h('div', {}, utilities, periods);
}

async function drawUsage(el) {
  el.replaceChildren(h('p', { class: 'muted' }, 'Loading usage…'));
  await fill(el, 'Usage', async () => {
    const data = await usage.load(state.account, ui.period);
    if (!data.utilities.length) return h('p', { class: 'muted' }, 'This account has no meters yet.');
    if (!data.utilities.includes(ui.utility)) ui.utility = data.utilities[0];
    const box = document.getElementById(`utility-${ui.utility}`);
    if (box) box.checked = true;
    for (const u of Object.keys(usage.PRIMARY)) {
      const b = document.getElementById(`utility-${u}`);
      if (b) b.disabled = !data.utilities.includes(u);
    }
    const u = ui.utility;
    return barChart({ title: `${cap(u)} use, ${usage.PERIODS[ui.period].label.toLowerCase()}`, unit: usage.UNIT[u], points: data.series[u], cls: u });
  });
}

// costCard shows one scope's cost so far, its forecast and its budget. The
// amounts are the API's; only the forecast's share of the budget is
// computed here, for the gauge.
function costCard(title, scope, x, currency, sub) {
  const budget = x.budget ?? null;
  const ratio = budget !== null ? Number(x.projected) / Number(budget) : null;
  return h('article', { class: 'card', 'data-scope': scope }, h('h3', {}, title),
    sub ? h('p', { class: 'muted' }, sub) : null,
    h('p', {}, 'So far'), h('p', { class: 'figure accrued' }, money(x.amount, currency)),
    h('p', {}, 'Forecast for the cycle: ', h('strong', { class: 'projected' }, money(x.projected, currency))),
    budget !== null ? [
      h('p', {}, 'Budget: ', h('strong', { class: 'budget' }, money(budget, currency))),
      h('meter', { min: 0, max: 1.25, low: 0.8, high: 1, optimum: 0.5, value: Math.min(ratio, 1.25), 'aria-label': `${title}: forecast against budget` }),
      h('p', { class: ratio > 1 ? 'status-failed' : 'status-succeeded' }, ratio > 1
        ? `The forecast is over the budget (${Math.round(ratio * 100)} %).`
        : `The forecast is within the budget (${Math.round(ratio * 100)} %).`),
    ] : h('p', { class: 'muted budget' }, 'No budget set.'),
    x.estimated ? h('p', { class: 'muted' }, 'Includes estimated readings.') : null);
}

// dayBefore is the day before a date (YYYY-MM-DD): the last day of a
// period that ends before date.
const dayBefore = (d) => new Date(Date.parse(`${d}T12:00:00Z`) - 86400e3).toISOString().slice(0, 10);

async function costView(el, open = false) {
  const acc = state.account;
  const [accrual, utilities] = await Promise.all([api.get(`/accounts/${acc.id}/accrual`), supplied(acc).catch(() => [])]);
  const cur = accrual.currency || acc.currency;
  const list = accrual.utilities || [];
  const out = [];
  if (list.length) {
    out.push(h('p', { class: 'muted' }, `Billing cycle ${fmtDate(accrual.cycle_start)} to ${fmtDate(accrual.cycle_end)}.`));
    out.push(h('div', { class: 'grid', id: 'cost-cards' },
      list.map((a) => costCard(cap(a.utility), a.utility, a, cur, `Usage up to the end of ${fmtDate(dayBefore(a.through))}`)),
      costCard('Whole account', 'account', accrual.total || {}, cur, 'All utilities together')));
  } else {
    out.push(h('p', { class: 'muted', id: 'cost-cards' }, 'No cost yet for this cycle.'));
  }
  for (const a of list) if (!utilities.includes(a.utility)) utilities.push(a.utility);
  out.push(budgetForm(el, utilities, accrual.budgets || [], cur, open));
  return out;
}

// budgetForm sets the account's budgets per billing cycle: one for the
// whole account and one per utility it is supplied with. An empty field
// removes that budget; the alert percentages of a budget are kept.
function budgetForm(el, utilities, current, currency, open) {
  const scopes = ['account', ...utilities];
  const have = Object.fromEntries(current.map((b) => [b.scope, b]));
  const status = h('div', { id: 'budget-status' });
  const inputs = scopes.map((sc) => field(sc === 'account' ? 'Whole account' : cap(sc),
    { name: sc, id: `budget-${sc}`, inputmode: 'decimal', autocomplete: 'off', value: have[sc] ? have[sc].amount : '' },
    `${currency} per billing cycle; leave empty for no budget.`));
  const save = h('button', { type: 'submit', id: 'budget-save' }, 'Save budgets');
  const form = h('form', { class: 'stack', id: 'budget-form' },
    h('p', {}, 'We alert you when the cost of a cycle reaches half, 80 % and all of a budget, and when the forecast goes over it.'),
    inputs, save, status);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(save, async () => {
      const budgets = scopes.filter((sc) => form[sc].value.trim() !== '').map((sc) => {
        const b = { scope: sc, amount: form[sc].value.trim() };
        if (have[sc] && have[sc].percents) b.percents = have[sc].percents;
        return b;
      });
      try {
        await api.put(`/accounts/${state.account.id}/budgets`, { budgets });
        announce('Budgets saved');
        await fill(el, 'The cost of this cycle', () => costView(el, true));
        const st = document.getElementById('budget-status');
        if (st) st.replaceChildren(notice('ok', 'Budgets saved.'));
      } catch (e) { status.replaceChildren(errorNotice(e, 'Saving budgets')); }
    });
  });
  return h('details', { id: 'budget-setup', open }, h('summary', {}, 'Set budgets'), form);
}

async function premisesView() {
  const hh = await household();
  const rows = [];
  for (const p of hh.premises || []) {
    if (p.account_id !== state.account.id) continue;
    for (const sp of p.service_points || []) rows.push({ p, sp });
  }
  return table(`Premises of account ${state.account.number}`, [
    { key: 'address', label: 'Address', render: (r) => r.p.address },
    { key: 'region', label: 'Region', render: (r) => r.p.region },
    { key: 'utility', label: 'Utility', render: (r) => cap(r.sp.utility) },
    { key: 'tariff', label: 'Tariff', render: (r) => r.sp.current_tariff || r.sp.tariff_code || '' },
    { key: 'meters', label: 'Meters', render: (r) => (r.sp.meters || []).map((m) => `${m.id}${m.status === 'active' ? '' : ` (${m.status})`}`).join(', ') },
    { key: 'last', label: 'Last reading', render: (r) => {
      const ts = (r.sp.meters || []).map((m) => m.last_reading_at).filter(Boolean).sort();
      return ts.length ? fmtTime(ts[ts.length - 1], r.p.time_zone) : 'none yet';
    } },
  ], rows, 'No premises for this account yet.');
}

// --- bills ---

async function bills() {
  const list = slot();
  main.replaceChildren(h('h1', {}, 'Bills'), accountPicker(), list);
  fill(list, 'Bills', async () => {
    const page = await api.get(`/accounts/${state.account.id}/bills?limit=50`);
    return table(`Bills of account ${state.account.number}`, [
      { key: 'period', label: 'Period', render: (b) => h('a', { href: `#/bills/${b.id}` }, `${fmtDate(b.period_start)} to ${fmtDate(b.period_end)}`) },
      { key: 'total', label: 'Total', num: true, render: (b) => money(b.total, b.currency) },
      { key: 'status', label: 'Status', render: (b) => h('span', { class: stateClass(b.status) }, b.status) },
      { key: 'due', label: 'Due', render: (b) => fmtDate(b.due_date) },
    ], api.items(page), 'No bills yet.');
  });
}

async function bill(id) {
  const body = slot();
  main.replaceChildren(h('h1', {}, `Bill ${id}`), h('p', {}, h('a', { href: '#/bills' }, 'All bills')), body);
  fill(body, 'This bill', async () => {
    const b = await api.get(`/bills/${id}`);
    const status = h('div');
    const pay = b.status === 'paid' ? null : payForm(id, status);
    return [
      h('dl', { class: 'props' },
        h('dt', {}, 'Account'), h('dd', {}, b.account_number),
        h('dt', {}, 'Period'), h('dd', {}, `${fmtDate(b.period_start)} to ${fmtDate(b.period_end)}`),
        h('dt', {}, 'Issued'), h('dd', {}, fmtTime(b.issued_at, b.time_zone)),
        h('dt', {}, 'Due'), h('dd', {}, fmtDate(b.due_date)),
        h('dt', {}, 'Status'), h('dd', { class: stateClass(b.status) }, b.status)),
      b.estimated ? notice('unavailable', `This bill includes estimates for ${b.missing_intervals} missing readings.`) : null,
      table('Lines', [
        { key: 'description', label: 'Item' },
        { key: 'quantity', label: 'Quantity', num: true, render: (l) => `${l.quantity} ${l.unit}` },
        { key: 'unit_price', label: 'Price', num: true },
        { key: 'amount', label: 'Amount', num: true },
      ], b.lines || []),
      h('dl', { class: 'props' },
        h('dt', {}, 'Subtotal'), h('dd', {}, money(b.subtotal, b.currency)),
        h('dt', {}, 'Tax'), h('dd', {}, money(b.tax, b.currency)),
        h('dt', {}, 'Total'), h('dd', { class: 'figure' }, money(b.total, b.currency))),
      h('p', {}, h('a', { class: 'button secondary', href: `${api.PREFIX}/bills/${id}/print`, target: '_blank', rel: 'noopener' }, 'Printable bill (opens in a new tab)')),
      pay ? section('Pay this bill', pay) : null,
      status,
    ];
  });
}

// payForm pays a bill with a chosen method. One key per form: a click sent
// twice (a retry, a double click) makes one payment.
function payForm(billID, status) {
  const key = `bill-${billID}-${crypto.randomUUID()}`;
  const out = h('div', {}, h('p', { class: 'muted' }, 'Loading your payment methods…'));
  api.get('/payment-methods').then((data) => {
    const methods = api.items(data);
    if (!methods.length) {
      out.replaceChildren(h('p', {}, 'Add a payment method first, on the ', h('a', { href: '#/methods' }, 'Payment methods'), ' page.'));
      return;
    }
    const method = field('Pay with', { tag: 'select', id: 'pay-method', name: 'payment_method_id' });
    method.querySelector('select').append(...methods.map(methodOption));
    const submit = h('button', { type: 'submit', id: 'pay-bill' }, 'Pay this bill');
    const form = h('form', { class: 'inline' }, method, submit);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(submit, async () => {
        try {
          const p = await api.post(`/bills/${billID}/pay`, { payment_method_id: Number(form.payment_method_id.value) }, { 'Idempotency-Key': key });
          location.hash = `#/payments/${p.id}`;
        } catch (e) { status.replaceChildren(errorNotice(e, 'Paying online')); }
      });
    });
    out.replaceChildren(h('p', {}, 'We send a code to your phone to confirm the payment.'), form);
  }).catch((e) => out.replaceChildren(errorNotice(e, 'Paying online')));
  return out;
}

const methodOption = (m) => h('option', { value: m.id }, methodName(m));
const methodName = (m) => (m.last4 ? `${m.brand || 'Card'} ending ${m.last4}` : `Payment method ${m.id}`);

// --- payments ---

async function payments() {
  const list = slot();
  const ref = field('Payment reference', { id: 'payment-ref', name: 'ref', inputmode: 'numeric', required: true }, 'The number in the message about your payment.');
  const open = h('form', { class: 'inline' }, ref, h('button', { type: 'submit' }, 'Open'));
  open.addEventListener('submit', (ev) => { ev.preventDefault(); location.hash = `#/payments/${encodeURIComponent(open.ref.value.trim())}`; });
  main.replaceChildren(h('h1', {}, 'Payments'), list, section('Confirm a payment', open));
  fill(list, 'The list of payments', async () => {
    const page = await api.get('/payments?limit=50');
    return table('Your payments', [
      { key: 'id', label: 'Payment', render: (p) => h('a', { href: `#/payments/${p.id}` }, `Payment ${p.id}`) },
      { key: 'amount', label: 'Amount', num: true, render: (p) => money(p.amount, p.currency) },
      { key: 'state', label: 'State', render: (p) => h('span', { class: stateClass(p.state) }, stateText(p.state)) },
      { key: 'created_at', label: 'Created', render: (p) => fmtTime(p.created_at) },
    ], api.items(page), 'No payments yet.');
  });
}

// What each payment state means to a household.
const PAYMENT_STATES = {
  created: 'waiting for its code', otp_sent: 'waiting for your code', confirmed: 'confirmed, being sent',
  charging: 'being processed', succeeded: 'paid', failed: 'did not go through', expired: 'expired unconfirmed, nothing was taken',
  canceled: 'cancelled, nothing was taken',
};
const stateText = (st) => PAYMENT_STATES[st] || st;
const awaitingCode = (p) => !p || p.state === 'created' || p.state === 'otp_sent';

function paymentDetails(p) {
  const what = p.bill_id ? h('a', { href: `#/bills/${p.bill_id}` }, `bill ${p.bill_id}`) : ({ topup: 'a prepaid top-up', accrued: 'usage so far' }[p.kind] || p.kind);
  return h('dl', { class: 'props', id: 'payment-details', 'data-state': p.state },
    h('dt', {}, 'Amount'), h('dd', { class: 'figure' }, money(p.amount, p.currency)),
    h('dt', {}, 'To'), h('dd', {}, p.payee),
    h('dt', {}, 'For'), h('dd', {}, what, p.autopay_rule_id ? ' (prepared by auto-pay)' : ''),
    h('dt', {}, 'State'), h('dd', { class: stateClass(p.state) }, stateText(p.state)),
    p.failure_reason ? [h('dt', {}, 'Reason'), h('dd', {}, p.failure_reason)] : null,
    awaitingCode(p) && p.confirm_by ? [h('dt', {}, 'Confirm by'), h('dd', {}, fmtTime(p.confirm_by))] : null,
    h('dt', {}, 'Created'), h('dd', {}, fmtTime(p.created_at)),
    p.settled_at ? [h('dt', {}, 'Settled'), h('dd', {}, fmtTime(p.settled_at))] : null);
}

async function paymentPage(id) {
  const details = slot();
  const status = h('div', { id: 'confirm-status' });
  const code = field('Code from your SMS', { id: 'confirm-code', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, required: true },
    'We send a six-digit code to your verified phone for every payment. Never share it.');
  const submit = h('button', { type: 'submit', id: 'confirm-submit' }, 'Confirm payment');
  const form = h('form', { class: 'stack', id: 'confirm-form' }, code, submit);
  const resend = h('button', { type: 'button', class: 'secondary', id: 'resend-code' }, 'Send a new code');
  const cancel = h('button', { type: 'button', class: 'secondary', id: 'cancel-payment' }, 'Cancel this payment');
  const confirm = section('Confirm with your code', form, h('p', {}, resend, ' ', cancel));
  main.replaceChildren(h('h1', {}, `Payment ${id}`), h('p', {}, h('a', { href: '#/payments' }, 'All payments')),
    details, confirm, status);
  const load = () => fill(details, 'Payment details', async () => {
    const p = await api.get(`/payments/${id}`);
    confirm.hidden = !awaitingCode(p);
    return paymentDetails(p);
  });
  load();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      try {
        const r = await api.post(`/payments/${id}/confirm`, { code: form.code.value.trim() });
        status.replaceChildren(notice(r.state === 'failed' ? 'error' : 'ok', h('span', { id: 'confirm-result', 'data-state': r.state },
          `Payment ${r.id} of ${money(r.amount, r.currency)}: ${stateText(r.state)}.`)));
        announce(`Payment ${stateText(r.state)}`);
        form.reset();
        load();
      } catch (e) {
        status.replaceChildren(errorNotice(e, 'The code was not accepted'));
        form.code.select();
      }
    });
  });
  resend.addEventListener('click', () => busy(resend, async () => {
    try { await api.post(`/payments/${id}/resend`); status.replaceChildren(notice('ok', 'A new code is on its way.')); } catch (e) { status.replaceChildren(errorNotice(e, 'Sending a new code')); }
  }));
  cancel.addEventListener('click', () => busy(cancel, async () => {
    try { const r = await api.post(`/payments/${id}/cancel`); status.replaceChildren(notice('ok', `Payment ${id}: ${stateText(r && r.state ? r.state : 'canceled')}.`)); load(); } catch (e) { status.replaceChildren(errorNotice(e, 'Cancelling')); }
  }));
}

// --- payment methods ---

const expiry = (m) => (m.exp_month ? `${String(m.exp_month).padStart(2, '0')}/${m.exp_year}` : '');

async function methodsPage() {
  const list = slot();
  const status = h('div', { id: 'method-status' });
  const tok = field('Card token', { id: 'method-token', name: 'token', required: true, autocomplete: 'off', spellcheck: 'false' },
    'The token our payment provider\'s card form gives you (it starts with tok_). We never see your card number.');
  const add = h('button', { type: 'submit', id: 'method-add' }, 'Add payment method');
  const form = h('form', { class: 'inline', id: 'method-form' }, tok, add);
  main.replaceChildren(h('h1', {}, 'Payment methods'),
    h('p', {}, 'Cards you pay bills and auto-pay with. Removing a card stops the auto-pay rules that use it.'),
    list, section('Add a card', form), status);
  const load = () => fill(list, 'Payment methods', async () => table('Your payment methods', [
    { key: 'name', label: 'Method', render: methodName },
    { key: 'expires', label: 'Expires', render: expiry },
    { key: 'created_at', label: 'Added', render: (m) => fmtTime(m.created_at) },
    { key: 'remove', label: 'Action', render: (m) => {
      const b = h('button', { type: 'button', class: 'secondary' }, `Remove ${methodName(m)}`);
      b.addEventListener('click', () => busy(b, async () => {
        try {
          await api.del(`/payment-methods/${m.id}`);
          status.replaceChildren(notice('ok', `${methodName(m)} removed.`));
          announce(`${methodName(m)} removed`);
          load();
        } catch (e) { status.replaceChildren(errorNotice(e, 'Removing the payment method')); }
      }));
      return b;
    } },
  ], api.items(await api.get('/payment-methods')), 'No payment methods yet.', (m) => ({ 'data-method-id': String(m.id) })));
  load();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(add, async () => {
      try {
        const m = await api.post('/payment-methods', { token: form.token.value.trim() });
        status.replaceChildren(notice('ok', h('span', { id: 'method-added', 'data-method-id': String(m.id) }, `Added ${methodName(m)}${m.exp_month ? `, expires ${expiry(m)}` : ''}.`)));
        announce(`Added ${methodName(m)}`);
        form.reset();
        load();
      } catch (e) {
        status.replaceChildren(errorNotice(e, 'Adding the payment method'));
        form.token.select();
      }
    });
  });
}

// --- auto-pay ---

async function autopay() {
  const rules = slot();
  const status = h('div');
  main.replaceChildren(h('h1', {}, 'Auto-pay'), accountPicker(),
    h('p', {}, 'With auto-pay we prepare each payment for you; it is only taken once you confirm it with the code we send by SMS.'),
    section(`Auto-pay for account ${state.account.number}`, rules), status);
  let methodList = [];
  fill(rules, 'Auto-pay', async () => {
    const [methods, rulesPage] = await Promise.all([api.get('/payment-methods'), api.get(`/accounts/${state.account.id}/autopay`)]);
    methodList = api.items(methods);
    const list = api.items(rulesPage);
    const cur = (r) => r.currency || state.account.currency;
    const when = (r) => {
      const t = (TRIGGERS[r.trigger] || { text: r.trigger }).text;
      if (r.trigger === 'accrued_above') return `When ${t.replace('an amount', money(r.accrued_above, cur(r)))}`;
      if (r.trigger === 'balance_below') return `When ${t.replace('an amount', money(r.balance_below, cur(r)))}, top up ${money(r.topup_amount, cur(r))}`;
      return `When ${t}`;
    };
    const tbl = table('Auto-pay rules', [
      { key: 'trigger', label: 'Rule', render: when },
      { key: 'max_amount', label: 'At most', num: true, render: (r) => money(r.max_amount, cur(r)) },
      { key: 'method', label: 'Pays with', render: (r) => { const m = methodList.find((x) => x.id === r.payment_method_id); return m ? methodName(m) : `Method ${r.payment_method_id}`; } },
      { key: 'enabled', label: 'State', render: (r) => {
        if (r.enabled) return h('span', { class: 'status-succeeded' }, 'in effect');
        if (r.disabled_at) return 'off';
        const b = h('button', { type: 'button', class: 'secondary' }, `Enter the code for rule ${r.id}`);
        b.addEventListener('click', () => status.replaceChildren(confirmRuleForm(r.id)));
        return h('span', {}, 'waiting for its code ', b);
      } },
      { key: 'action', label: 'Action', render: (r) => {
        if (r.disabled_at) return '';
        const del = h('button', { type: 'button', class: 'secondary' }, `Turn off rule ${r.id}`);
        del.addEventListener('click', () => busy(del, async () => {
          try { await api.del(`/autopay/${r.id}`); route(); } catch (e) { status.replaceChildren(errorNotice(e, 'Turning auto-pay off')); }
        }));
        return del;
      } },
    ], list, 'Auto-pay is off for this account.');
    return [tbl, autopayForm(methodList, status)];
  });
}

// The triggers of an auto-pay rule, with the amounts each one needs (as in
// the autopay_rules table).
const TRIGGERS = {
  bill_issued: { text: 'a bill is issued', needs: [] },
  accrued_above: { text: 'the cost of the cycle goes above an amount', needs: ['accrued_above'] },
  balance_below: { text: 'my prepaid balance falls below an amount', needs: ['balance_below', 'topup_amount'] },
};

function autopayForm(methods, status) {
  const trigger = field('Pay when', { tag: 'select', id: 'autopay-trigger', name: 'trigger' });
  trigger.querySelector('select').append(...Object.entries(TRIGGERS).map(([v, t]) => h('option', { value: v }, t.text)));
  const method = field('Payment method', { tag: 'select', id: 'autopay-method', name: 'payment_method_id', required: true });
  method.querySelector('select').append(...methods.map(methodOption));
  const max = field('Never pay more than', { id: 'autopay-max', name: 'max_amount', inputmode: 'decimal', required: true }, 'In the account currency; a larger payment is not prepared.');
  const amounts = {
    accrued_above: field('Cost of the cycle that starts a payment', { id: 'autopay-accrued-above', name: 'accrued_above', inputmode: 'decimal' }),
    balance_below: field('Balance that starts a top-up', { id: 'autopay-balance-below', name: 'balance_below', inputmode: 'decimal' }),
    topup_amount: field('Top up by', { id: 'autopay-topup', name: 'topup_amount', inputmode: 'decimal' }),
  };
  const submit = h('button', { type: 'submit' }, 'Set up auto-pay');
  const form = h('form', { class: 'stack', id: 'autopay-form' }, trigger, method, max, Object.values(amounts), submit);
  const show = () => {
    for (const [k, el] of Object.entries(amounts)) {
      const needed = TRIGGERS[form.trigger.value].needs.includes(k);
      el.hidden = !needed;
      el.querySelector('input').required = needed;
    }
  };
  form.trigger.addEventListener('change', show);
  show();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      const t = form.trigger.value;
      const body = { trigger: t, payment_method_id: Number(form.payment_method_id.value), max_amount: form.max_amount.value.trim() };
      for (const k of TRIGGERS[t].needs) body[k] = form[k].value.trim();
      try {
        const rule = await api.post(`/accounts/${state.account.id}/autopay`, body);
        status.replaceChildren(confirmRuleForm(rule.id ?? (rule.rule && rule.rule.id)));
      } catch (e) { status.replaceChildren(errorNotice(e, 'Setting up auto-pay')); }
    });
  });
  return h('details', { id: 'autopay-setup' }, h('summary', {}, 'Set up auto-pay'), methods.length ? form : h('p', {}, 'Add a payment method first, on the ', h('a', { href: '#/methods' }, 'Payment methods'), ' page.'));
}

function confirmRuleForm(ruleID) {
  const out = h('div');
  const code = field('Code from your SMS', { id: 'autopay-code', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 6, required: true });
  const submit = h('button', { type: 'submit', id: 'autopay-confirm' }, 'Confirm auto-pay');
  const resend = h('button', { type: 'button', class: 'secondary' }, 'Send a new code');
  const result = h('div');
  const form = h('form', { class: 'stack', id: 'autopay-code-form' }, code, h('p', {}, submit, ' ', resend), result);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      try {
        await api.post(`/autopay/${ruleID}/confirm`, { code: form.code.value.trim() });
        out.replaceChildren(notice('ok', h('span', { id: 'autopay-on' }, 'Auto-pay is on. Each payment it prepares still waits for the code we send you.')));
        announce('Auto-pay is on');
      } catch (e) { result.replaceChildren(errorNotice(e, 'The code was not accepted')); }
    });
  });
  resend.addEventListener('click', () => busy(resend, async () => {
    try { await api.post(`/autopay/${ruleID}/resend`); result.replaceChildren(notice('ok', 'A new code is on its way.')); } catch (e) { result.replaceChildren(errorNotice(e, 'Sending a new code')); }
  }));
  out.append(notice('ok', 'We have sent you a code by SMS stating the terms of this auto-pay. Enter it to turn auto-pay on.'), form);
  setTimeout(() => form.code.focus(), 0);
  return out;
}

// --- phones ---

async function phones() {
  const list = slot();
  const status = h('div');
  const phone = field('Phone number', { id: 'phone-new', name: 'phone', type: 'tel', autocomplete: 'tel', required: true });
  const add = h('button', { type: 'submit' }, 'Add and send a code');
  const form = h('form', { class: 'inline' }, phone, add);
  main.replaceChildren(h('h1', {}, 'Phones'), h('p', {}, 'Payment codes go to your most recently verified phone.'), list, section('Add a phone', form), status);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(add, async () => {
      try {
        const p = await api.post('/phones', { phone: form.phone.value.trim() });
        status.replaceChildren(notice('ok', 'We have sent a code to the new number.'), verifyPhoneForm(p.id));
      } catch (e) { status.replaceChildren(errorNotice(e, 'Adding the phone')); }
    });
  });
  fill(list, 'Your phones', async () => {
    const items = api.items(await api.get('/phones'));
    return table('Your phones', [
      { key: 'e164', label: 'Number' },
      { key: 'verified', label: 'Verified', render: (p) => (p.verified_at ? `yes, ${fmtTime(p.verified_at)}` : 'no') },
      { key: 'verify', label: 'Action', render: (p) => {
        if (p.verified_at) return '';
        const again = h('button', { type: 'button', class: 'secondary' }, 'Send the code again');
        again.addEventListener('click', () => busy(again, async () => {
          try { await api.post(`/phones/${p.id}/resend`); announce('Code sent'); } catch (e) { again.after(errorNotice(e, 'Sending the code')); }
        }));
        return [verifyPhoneForm(p.id), again];
      } },
    ], items, 'No phones yet.');
  });
}

function verifyPhoneForm(id) {
  const code = field('Code', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 6, required: true });
  const submit = h('button', { type: 'submit' }, 'Verify');
  const out = h('div', { role: 'status' });
  const form = h('form', { class: 'inline' }, code, submit, out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      try { await api.post(`/phones/${id}/verify`, { code: form.code.value.trim() }); route(); } catch (e) { out.replaceChildren(errorNotice(e, 'The code was not accepted')); }
    });
  });
  return form;
}

// --- downloads ---

// zoned returns the instant of local midnight starting day (YYYY-MM-DD) in
// time zone tz, as RFC 3339 UTC.
function zoned(day, tz) {
  const [y, m, d] = day.split('-').map(Number);
  const guess = Date.UTC(y, m - 1, d);
  const offset = (t) => {
    const p = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' })
      .formatToParts(new Date(t)).map((x) => [x.type, x.value]));
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - t;
  };
  let t = guess - offset(guess);
  t = guess - offset(t);
  return new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const STEPS = { '15m': ['Every 15 minutes', 31], '1h': ['Hourly', 366], '1d': ['Daily', 5 * 366] };

function exportsPage() {
  const acc = state.account;
  const tz = acc.time_zone || 'UTC';
  const today = new Intl.DateTimeFormat('en-CA', { timeZone: tz }).format(new Date());
  const weekAgo = new Intl.DateTimeFormat('en-CA', { timeZone: tz }).format(new Date(Date.now() - 7 * 86400e3));
  const step = field('Detail', { tag: 'select', id: 'export-step', name: 'step' });
  step.querySelector('select').append(...Object.entries(STEPS).map(([v, [t]]) => h('option', { value: v, selected: v === '1h' }, t)));
  const from = field('From (first day)', { id: 'export-from', name: 'from', type: 'date', value: weekAgo, max: today, required: true });
  const to = field('To (last day)', { id: 'export-to', name: 'to', type: 'date', value: today, max: today, required: true });
  const form = h('form', { class: 'inline', id: 'export-form' }, step, from, to);
  const links = h('div', { id: 'export-links' });
  main.replaceChildren(h('h1', {}, 'Downloads'), accountPicker(),
    h('p', {}, `Your usage as files, for a spreadsheet or another energy service. Days are in ${tz}.`),
    section('Choose the period', form), section('Download', links));
  const update = () => {
    const f = form.from.value;
    const t = form.to.value;
    const st = form.step.value;
    if (!f || !t || f > t) {
      links.replaceChildren(notice('error', 'Choose a first day on or before the last day.'));
      return;
    }
    const end = new Date(Date.parse(`${t}T12:00:00Z`) + 86400e3).toISOString().slice(0, 10);
    const days = Math.round((Date.parse(end) - Date.parse(f)) / 86400e3);
    if (days > STEPS[st][1]) {
      links.replaceChildren(notice('error', `${STEPS[st][0]} figures cover at most ${STEPS[st][1]} days; choose a shorter period or less detail.`));
      return;
    }
    const q = `step=${st}&from=${encodeURIComponent(zoned(f, tz))}&to=${encodeURIComponent(zoned(end, tz))}`;
    const base = `${api.PREFIX}/accounts/${acc.id}`;
    links.replaceChildren(h('ul', { class: 'links' },
      h('li', {}, h('a', { id: 'export-csv', href: `${base}/export.csv?${q}`, download: `usage-${acc.number}-${f}-${t}.csv` }, 'Usage as CSV'),
        h('span', { class: 'muted' }, ' – every meter and register, one row per interval')),
      h('li', {}, h('a', { id: 'export-greenbutton', href: `${base}/greenbutton.xml?${q}`, download: `greenbutton-${acc.number}-${f}-${t}.xml` }, 'Electricity as Green Button XML'),
        h('span', { class: 'muted' }, ' – the standard format other energy services read'))));
  };
  form.addEventListener('change', update);
  form.addEventListener('submit', (ev) => ev.preventDefault());
  update();
}

// --- development SMS inbox ---

async function messages() {
  const list = slot();
  main.replaceChildren(h('h1', {}, 'Messages'), h('p', { class: 'muted' }, 'On a development server, the SMS messages we would have sent you appear here.'), list);
  fill(list, 'The message inbox', async () => table('Messages', [
    { key: 'created_at', label: 'Sent', render: (m) => fmtTime(m.created_at) },
    { key: 'to', label: 'To' },
    { key: 'body', label: 'Message' },
  ], api.items(await api.get('/dev/sms')), 'No messages.'));
}

// --- routing ---

async function route() {
  const hash = location.hash || '#/';
  const [, page, id] = hash.match(/^#\/([a-z-]*)\/?([^/]*)/) || [];
  const current = PAGES.find(([href]) => href === `#/${page || ''}`);
  renderNav(current ? current[0] : '');
  const pages = {
    '': home, bills: id ? () => bill(id) : bills, payments: id ? () => paymentPage(id) : payments,
    autopay, methods: methodsPage, phones, alerts: () => alerts.alertsPage(main), exports: exportsPage, messages,
  };
  const fn = pages[page || ''] || home;
  document.title = `${current ? current[1] : 'Meterflow'} – Meterflow`;
  try {
    await fn();
  } catch (e) {
    main.replaceChildren(errorNotice(e, 'This page'));
  }
}

async function start() {
  let user;
  try { user = await api.me(); } catch (e) { main.replaceChildren(errorNotice(e, 'The portal')); return; }
  if (!user) {
    signInView(main, 'Sign in to your home', () => start());
    return;
  }
  state.user = user;
  if (user.role === 'operator') {
    main.replaceChildren(h('h1', {}, 'You are signed in as an operator'), h('p', {}, h('a', { href: '/operator/' }, 'Go to the operator dashboard')));
    return;
  }
  try {
    state.accounts = api.items(await api.get('/accounts?limit=100'));
  } catch (e) { main.replaceChildren(errorNotice(e, 'Your accounts')); return; }
  if (!state.accounts.length) { main.replaceChildren(h('h1', {}, 'Welcome'), h('p', {}, 'Your household has no account yet.')); return; }
  state.account = state.accounts[0];
  alerts.startAlerts();
  window.addEventListener('hashchange', () => { route(); main.focus(); });
  route();
}

start();
