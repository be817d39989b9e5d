// The household portal: usage, this cycle's cost, bills, payments,
// auto-pay, phones, alerts. Pages are addressed by the URL fragment
// (#/bills/12), so the server serves one page and links can be shared.

import * as api from './api.js';
import { h, field, notice, errorNotice, announce, table, anyView, busy, money, fmtDate, fmtTime, fmtNum, stateClass } from './dom.js';
import { barChart } from './chart.js';
import { signInView } from './signin.js';
import * as usage from './usage.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');

const state = { user: null, accounts: [], account: null, alertStream: null };

const PAGES = [
  ['#/', 'Home'],
  ['#/bills', 'Bills'],
  ['#/payments', 'Payments'],
  ['#/autopay', 'Auto-pay'],
  ['#/phones', 'Phones'],
  ['#/alerts', 'Alerts'],
  ['#/messages', 'Messages'],
];

function renderNav(current) {
  nav.hidden = false;
  const out = h('button', { type: 'button', class: 'secondary', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', async () => { await api.signOut().catch(() => {}); location.hash = ''; location.reload(); });
  nav.replaceChildren(h('ul', {},
    PAGES.map(([href, text]) => h('li', {}, h('a', { href, 'aria-current': href === current ? 'page' : null }, text))),
    h('li', {}, out)));
}

function section(title, ...body) {
  return h('section', { 'aria-label': title }, h('h2', {}, title), ...body);
}

// slot is a placeholder a section fills when its request returns.
function slot(text = 'Loading…') { return h('div', { class: 'slot', 'aria-busy': 'true' }, h('p', { class: 'muted' }, text)); }

async function fill(el, what, fn) {
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

function accountPicker() {
  if (state.accounts.length < 2) return '';
  const sel = h('select', { id: 'account-select' }, state.accounts.map((a) => h('option', { value: a.id, selected: a.id === state.account.id }, a.number)));
  sel.addEventListener('change', () => { state.account = state.accounts.find((a) => String(a.id) === sel.value); route(); });
  return h('div', { class: 'field' }, h('label', { for: 'account-select' }, 'Account'), sel);
}

// --- home: cost this cycle and usage ---

async function home() {
  const acc = state.account;
  const cost = slot();
  const chart = slot();
  const controls = usageControls(() => drawUsage(chart));
  main.replaceChildren(
    h('h1', {}, 'Your home'),
    h('p', { class: 'muted' }, `Account ${acc.number}`), accountPicker(),
    section('This cycle', cost),
    section('Usage', controls, chart));
  fill(cost, 'The cost of this cycle', costCards);
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
    Object.keys(usage.PRIMARY).map((u) => radio('utility', u, u[0].toUpperCase() + u.slice(1), ui.utility === u)));
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
    const name = u[0].toUpperCase() + u.slice(1);
    const out = [barChart({ title: `${name} use, ${usage.PERIODS[ui.period].label.toLowerCase()}`, unit: usage.UNIT[u], points: data.series[u], cls: u })];
    if (data.monthly === 'browser') out.push(h('p', { class: 'muted' }, 'Months are added up from daily figures.'));
    return out;
  });
}

async function costCards() {
  const acc = state.account;
  const [accrual, budgets] = await Promise.all([
    api.get(`/accounts/${acc.id}/accrual`),
    api.get(`/accounts/${acc.id}/budgets`).catch((e) => e),
  ]);
  const list = accrual.utilities || [];
  const budgetOf = (u) => {
    if (budgets instanceof Error) return null;
    const b = api.items(budgets).find((x) => x.utility === u) || (budgets && budgets[u]);
    if (!b) return null;
    return typeof b === 'object' ? (b.amount ?? b.budget ?? b.limit ?? null) : b;
  };
  const cards = list.length ? h('div', { class: 'grid' }, list.map((a) => {
    const budget = budgetOf(a.utility);
    const ratio = budget ? Number(a.projected) / Number(budget) : null;
    return h('article', { class: 'card', 'data-utility': a.utility }, h('h3', {}, a.utility[0].toUpperCase() + a.utility.slice(1)),
      h('p', { class: 'muted' }, `${fmtDate(a.cycle_start)} to ${fmtDate(a.cycle_end)}, figures up to ${fmtDate(a.through)}`),
      h('p', {}, 'So far'), h('p', { class: 'figure accrued' }, money(a.amount, a.currency)),
      h('p', {}, `Forecast for the cycle: `, h('strong', { class: 'projected' }, money(a.projected, a.currency))),
      budget !== null ? [
        h('p', {}, `Budget: ${money(budget, a.currency)}`),
        h('meter', { min: 0, max: 1.25, low: 0.8, high: 1, optimum: 0.5, value: Math.min(ratio, 1.25), 'aria-label': 'Forecast against budget' }),
        h('p', { class: ratio > 1 ? 'status-failed' : 'status-succeeded' }, ratio > 1
          ? `The forecast is over your budget (${Math.round(ratio * 100)} %).`
          : `The forecast is within your budget (${Math.round(ratio * 100)} %).`),
      ] : null,
      a.estimated ? h('p', { class: 'muted' }, 'Includes estimated readings.') : null);
  })) : h('p', { class: 'muted' }, 'No cost yet for this cycle.');
  const out = [cards];
  if (budgets instanceof Error) {
    out.push(budgets instanceof api.ApiError && budgets.missing
      ? h('p', { class: 'muted' }, 'Budgets are not available on this server yet.')
      : errorNotice(budgets, 'Budgets'));
  } else {
    out.push(budgetForm(list, budgets, budgetOf));
  }
  return out;
}

function budgetForm(accruals, current, budgetOf) {
  const utils = accruals.map((a) => a.utility);
  if (!utils.length) return null;
  const status = h('div');
  const inputs = utils.map((u) => field(`${u[0].toUpperCase() + u.slice(1)} budget per cycle`, { name: u, id: `budget-${u}`, inputmode: 'decimal', value: budgetOf(u) ?? '' }));
  const save = h('button', { type: 'submit' }, 'Save budgets');
  const form = h('form', { class: 'stack' }, inputs, save, status);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(save, async () => {
      const list = utils.filter((u) => form[u].value.trim() !== '').map((u) => ({ utility: u, amount: form[u].value.trim() }));
      try {
        await api.put(`/accounts/${state.account.id}/budgets`, Array.isArray(current) ? list : { items: list });
        status.replaceChildren(notice('ok', 'Budgets saved.'));
      } catch (e) { status.replaceChildren(errorNotice(e, 'Saving budgets')); }
    });
  });
  return h('details', {}, h('summary', {}, 'Change budgets'), form);
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
      out.replaceChildren(h('p', {}, 'Add a payment method first, on the ', h('a', { href: '#/autopay' }, 'Auto-pay'), ' page.'));
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

// --- auto-pay and payment methods ---

async function autopay() {
  const methods = slot();
  const rules = slot();
  const status = h('div');
  main.replaceChildren(h('h1', {}, 'Auto-pay'), accountPicker(),
    h('p', {}, 'With auto-pay we prepare each payment for you; it is only taken once you confirm it with the code we send by SMS.'),
    section('Payment methods', methods), section(`Auto-pay for account ${state.account.number}`, rules), status);
  let methodList = [];
  await fill(methods, 'Payment methods', async () => {
    methodList = api.items(await api.get('/payment-methods'));
    const tok = field('Card token', { id: 'method-token', name: 'token', required: true, autocomplete: 'off' }, 'The token the card form of our payment provider gives you. We never see your card number.');
    const add = h('button', { type: 'submit' }, 'Add payment method');
    const form = h('form', { class: 'inline' }, tok, add);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(add, async () => {
        try { await api.post('/payment-methods', { token: form.token.value.trim() }); route(); } catch (e) { status.replaceChildren(errorNotice(e, 'Adding the payment method')); }
      });
    });
    return [table('Payment methods', [
      { key: 'name', label: 'Method', render: methodName },
      { key: 'expires', label: 'Expires', render: (m) => (m.exp_month ? `${String(m.exp_month).padStart(2, '0')}/${m.exp_year}` : '') },
      { key: 'created_at', label: 'Added', render: (m) => fmtTime(m.created_at) },
      { key: 'remove', label: 'Action', render: (m) => {
        const b = h('button', { type: 'button', class: 'secondary' }, `Remove ${methodName(m)}`);
        b.addEventListener('click', () => busy(b, async () => {
          try { await api.del(`/payment-methods/${m.id}`); route(); } catch (e) { status.replaceChildren(errorNotice(e, 'Removing the payment method')); }
        }));
        return b;
      } },
    ], methodList, 'No payment methods yet.'), form];
  });
  fill(rules, 'Auto-pay', async () => {
    const list = api.items(await api.get(`/accounts/${state.account.id}/autopay`));
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
  return h('details', { id: 'autopay-setup' }, h('summary', {}, 'Set up auto-pay'), methods.length ? form : h('p', { class: 'muted' }, 'Add a payment method first.'));
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
      { key: 'phone', label: 'Number', render: (p) => p.phone || p.e164 || p.number },
      { key: 'verified', label: 'Verified', render: (p) => (p.verified_at ? `yes, ${fmtTime(p.verified_at)}` : (p.verified ? 'yes' : 'no')) },
      { key: 'verify', label: 'Action', render: (p) => {
        if (p.verified_at || p.verified) return '';
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

// --- alerts ---

async function alerts() {
  const list = slot();
  const prefs = slot();
  main.replaceChildren(h('h1', {}, 'Alerts'), list, section('What we tell you about', prefs));
  const load = () => fill(list, 'Alerts', async () => {
    const items = api.items(await api.get('/alerts?limit=50'));
    return table('Your alerts', [
      { key: 'created_at', label: 'When', render: (a) => fmtTime(a.created_at || a.at) },
      { key: 'text', label: 'Alert', render: (a) => a.message || a.text || a.title || a.kind },
      { key: 'read', label: 'Read', render: (a) => {
        if (a.read_at || a.read) return 'yes';
        const b = h('button', { type: 'button', class: 'secondary' }, 'Mark as read');
        b.addEventListener('click', () => busy(b, async () => { await api.post(`/alerts/${a.id}/read`).catch(() => {}); load(); }));
        return b;
      } },
    ], items, 'No alerts.');
  });
  load();
  if (!state.alertStream && window.EventSource) {
    const es = new EventSource(`${api.PREFIX}/alerts/stream`);
    es.addEventListener('message', (ev) => {
      announce('New alert');
      if (location.hash.startsWith('#/alerts')) load();
      try { const a = JSON.parse(ev.data); announce(`New alert: ${a.message || a.text || a.kind || ''}`); } catch { /* not JSON */ }
    });
    es.addEventListener('error', () => { if (es.readyState === EventSource.CLOSED) state.alertStream = null; });
    state.alertStream = es;
  }
  fill(prefs, 'Alert preferences', async () => preferencesForm(await api.get('/alert-preferences')));
}

function preferencesForm(p) {
  if (!p || typeof p !== 'object' || Array.isArray(p) || Array.isArray(p.items)) return anyView('Alert preferences', p);
  const status = h('div');
  const fields = Object.entries(p).map(([k, v]) => {
    const id = `pref-${k}`;
    const label = k.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
    if (typeof v === 'boolean') return h('div', {}, h('input', { type: 'checkbox', id, name: k, checked: v }), ' ', h('label', { for: id }, label));
    if (typeof v === 'object') return null;
    return field(label, { id, name: k, value: v ?? '', inputmode: typeof v === 'number' ? 'decimal' : null });
  });
  const save = h('button', { type: 'submit' }, 'Save preferences');
  const form = h('form', { class: 'stack' }, fields, save, status);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(save, async () => {
      const out = {};
      for (const [k, v] of Object.entries(p)) {
        const el = form.elements[k];
        if (!el) out[k] = v;
        else if (typeof v === 'boolean') out[k] = el.checked;
        else if (typeof v === 'number') out[k] = Number(el.value);
        else out[k] = el.value;
      }
      try { await api.put('/alert-preferences', out); status.replaceChildren(notice('ok', 'Preferences saved.')); } catch (e) { status.replaceChildren(errorNotice(e, 'Saving preferences')); }
    });
  });
  return form;
}

// --- development SMS inbox ---

async function messages() {
  const list = slot();
  main.replaceChildren(h('h1', {}, 'Messages'), h('p', { class: 'muted' }, 'On a development server, the SMS messages we would have sent you appear here.'), list);
  fill(list, 'The message inbox', async () => anyView('Messages', await api.get('/dev/sms'), 'No messages.'));
}

// --- routing ---

async function route() {
  const hash = location.hash || '#/';
  const [, page, id] = hash.match(/^#\/([a-z-]*)\/?([^/]*)/) || [];
  const current = PAGES.find(([href]) => href === `#/${page || ''}`);
  renderNav(current ? current[0] : '');
  const pages = {
    '': home, bills: id ? () => bill(id) : bills, payments: id ? () => paymentPage(id) : payments,
    autopay, phones, alerts, messages,
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
  window.addEventListener('hashchange', () => { route(); main.focus(); });
  route();
}

start();
