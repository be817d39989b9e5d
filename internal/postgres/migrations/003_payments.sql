-- Payments: verified household phones, one-time passwords, payment methods,
-- auto-pay rules, payments and their state machine, SMS messages, and a
-- double-entry ledger. docs/payments.md describes the model. Money is
-- numeric, never a floating-point type.

-- A household's phone numbers in E.164. A number receives payment codes only
-- once it is verified (verified_at set) by a code sent to it.
create table household_phones (
    id            bigserial primary key,
    household_id  bigint not null references households(id),
    e164          text not null check (e164 ~ '^\+[1-9][0-9]{6,14}$'),
    verified_at   timestamptz,
    created_at    timestamptz not null default now(),
    unique (household_id, e164)
);

-- Payment methods hold the gateway's token only. A card number is never
-- stored: the check refuses anything that looks like one.
create table payment_methods (
    id            bigserial primary key,
    household_id  bigint not null references households(id),
    gateway       text not null check (gateway <> ''),
    token         text not null check (token <> '' and token !~ '^[0-9 -]{12,23}$'),
    brand         text not null default '',
    last4         text not null default '' check (last4 ~ '^([0-9]{4})?$'),
    exp_month     smallint check (exp_month between 1 and 12),
    exp_year      smallint,
    created_at    timestamptz not null default now(),
    disabled_at   timestamptz,
    unique (gateway, token)
);
create index payment_methods_household on payment_methods(household_id);

-- Auto-pay rules of an account: pay each bill when it is issued, pay the
-- accrued cost when it rises above accrued_above, or top up the prepaid
-- balance by topup_amount when it falls below balance_below. max_amount caps
-- any one payment the rule creates; a larger one is not created.
create table autopay_rules (
    id                 bigserial primary key,
    account_id         bigint not null references accounts(id),
    household_id       bigint not null references households(id),
    trigger            text not null check (trigger in ('bill_issued', 'accrued_above', 'balance_below')),
    accrued_above      numeric check (accrued_above > 0),
    balance_below      numeric,
    topup_amount       numeric check (topup_amount > 0),
    max_amount         numeric not null check (max_amount > 0),
    payment_method_id  bigint not null references payment_methods(id),
    enabled            boolean not null default true,
    created_at         timestamptz not null default now(),
    check (trigger <> 'accrued_above' or accrued_above is not null),
    check (trigger <> 'balance_below' or (balance_below is not null and topup_amount is not null)),
    unique (account_id, trigger)
);

-- A payment and its state machine (internal/payment):
--   created -> otp_sent -> confirmed -> charging -> succeeded | failed
--   created | otp_sent -> expired | canceled
-- The idempotency key is sent to the gateway with every attempt of the
-- charge and is persisted before the first one, so a charge happens at most
-- once even when the process dies mid-way. lease_until keeps a recovery
-- pass from re-issuing a charge another process is still making.
create table payments (
    id                 bigserial primary key,
    household_id       bigint not null references households(id),
    account_id         bigint not null references accounts(id),
    bill_id            bigint references bills(id),
    autopay_rule_id    bigint references autopay_rules(id),
    kind               text not null check (kind in ('bill', 'accrued', 'topup')),
    amount             numeric not null check (amount > 0),
    currency           char(3) not null check (currency ~ '^[A-Z]{3}$'),
    payee              text not null check (payee <> ''),
    payment_method_id  bigint not null references payment_methods(id),
    state              text not null default 'created' check (state in
                       ('created', 'otp_sent', 'confirmed', 'charging', 'succeeded', 'failed', 'expired', 'canceled')),
    idempotency_key    text not null unique check (length(idempotency_key) between 1 and 255),
    gateway            text not null default '',
    gateway_charge_id  text not null default '',
    gateway_status     text not null default '',
    attempts           int not null default 0 check (attempts >= 0),
    failure_reason     text not null default '',
    confirm_by         timestamptz not null,
    lease_until        timestamptz,
    created_at         timestamptz not null,
    updated_at         timestamptz not null,
    otp_sent_at        timestamptz,
    confirmed_at       timestamptz,
    charging_at        timestamptz,
    settled_at         timestamptz,
    check (kind <> 'bill' or bill_id is not null)
);
create index payments_household on payments(household_id);
create index payments_pending on payments(confirm_by) where state in ('created', 'otp_sent');
create index payments_charging on payments(lease_until) where state = 'charging';
-- A bill has at most one payment that may still take money.
create unique index payments_one_live_per_bill on payments(bill_id)
    where bill_id is not null and state not in ('failed', 'expired', 'canceled');

-- The database refuses any state change the state machine does not allow,
-- whatever code writes it.
create function payments_transition() returns trigger language plpgsql as $$
begin
    if new.state = old.state then
        return new;
    end if;
    if (old.state, new.state) not in (
        ('created', 'otp_sent'), ('created', 'expired'), ('created', 'canceled'),
        ('otp_sent', 'confirmed'), ('otp_sent', 'expired'), ('otp_sent', 'canceled'),
        ('confirmed', 'charging'),
        ('charging', 'succeeded'), ('charging', 'failed')) then
        raise exception 'payment %: % -> % is not allowed', old.id, old.state, new.state using errcode = 'P0001';
    end if;
    return new;
end $$;
create trigger payments_transition before update on payments
    for each row execute function payments_transition();

-- One-time passwords. Only an HMAC-SHA256 of the code, under a server key,
-- is kept; its input binds the code to its purpose and subject (the
-- payment's id, amount, currency, payee and bill, or the phone), so a code
-- never confirms anything else. One row per subject and purpose: a resend
-- replaces the hash and counts in sends; attempts count every check.
create table otp_codes (
    id             bigserial primary key,
    household_id   bigint not null references households(id),
    purpose        text not null check (purpose in ('payment_confirm', 'phone_verify')),
    payment_id     bigint references payments(id),
    phone_id       bigint references household_phones(id),
    mac            bytea not null check (length(mac) = 32),
    key_id         text not null default '',
    expires_at     timestamptz not null,
    attempts       int not null default 0 check (attempts >= 0),
    sends          int not null default 1 check (sends >= 1),
    last_sent_at   timestamptz not null,
    used_at        timestamptz,
    created_at     timestamptz not null,
    check ((purpose = 'payment_confirm') = (payment_id is not null)),
    check ((purpose = 'phone_verify') = (phone_id is not null))
);
create unique index otp_codes_payment on otp_codes(payment_id) where payment_id is not null;
create unique index otp_codes_phone on otp_codes(phone_id) where phone_id is not null;

-- Failed code checks per household and UTC day. At the policy's limit the
-- household's confirmations are locked for the rest of that day.
create table otp_failures (
    household_id  bigint not null references households(id),
    day           date not null,
    failures      int not null default 0,
    locked_at     timestamptz,
    primary key (household_id, day)
);

-- SMS messages: every message sent to a household and its delivery status.
-- A one-time password is never stored here in clear: body holds the text
-- with the code masked.
create table sms_messages (
    id            bigserial primary key,
    household_id  bigint references households(id),
    to_e164       text not null check (to_e164 ~ '^\+[1-9][0-9]{6,14}$'),
    purpose       text not null check (purpose in ('otp', 'notice')),
    payment_id    bigint references payments(id),
    body          text not null,
    provider      text not null default '',
    provider_id   text not null default '',
    status        text not null default 'queued'
                  check (status in ('queued', 'sent', 'delivered', 'failed', 'undelivered')),
    error         text not null default '',
    attempts      int not null default 0,
    created_at    timestamptz not null,
    updated_at    timestamptz not null
);
create index sms_messages_household on sms_messages(household_id, id);
create index sms_messages_queued on sms_messages(id) where status = 'queued';
create index sms_messages_provider on sms_messages(provider, provider_id) where provider_id <> '';

-- The development SMS inbox: what the development sender "delivered", in
-- full, readable in the portal. Production never writes here.
create table sms_dev_inbox (
    id          bigserial primary key,
    to_e164     text not null,
    body        text not null,
    created_at  timestamptz not null default now()
);

-- Double-entry ledger. An entry is a set of postings in one currency whose
-- amounts (debits positive, credits negative) sum to zero; the deferred
-- constraint trigger checks every entry touched by a transaction when it
-- commits, and `meterflow ledger check` checks them all. Entries are never
-- changed or deleted: a correction is a new entry.
create table ledger_entries (
    id          bigserial primary key,
    entry_key   text not null unique,
    memo        text not null default '',
    payment_id  bigint references payments(id),
    posted_at   timestamptz not null,
    created_at  timestamptz not null default now()
);

create table ledger_postings (
    entry_id  bigint not null references ledger_entries(id),
    line_no   smallint not null,
    account   text not null check (account ~ '^[a-z_]+(:[a-z0-9_]+)*$'),
    amount    numeric not null check (amount <> 0),
    currency  char(3) not null check (currency ~ '^[A-Z]{3}$'),
    primary key (entry_id, line_no)
);
create index ledger_postings_account on ledger_postings(account);

-- ledger_check_entry raises unless entry e has at least two postings and
-- they sum to zero in each currency.
create function ledger_check_entry(e bigint) returns void language plpgsql as $$
declare
    n int;
    unbalanced int;
begin
    select count(*) into n from ledger_postings where entry_id = e;
    select count(*) into unbalanced from (
        select currency from ledger_postings where entry_id = e
         group by currency having sum(amount) <> 0) u;
    if n < 2 or unbalanced > 0 then
        raise exception 'ledger entry % does not balance', e using errcode = 'P0001';
    end if;
end $$;

create function ledger_postings_balance() returns trigger language plpgsql as $$
begin
    perform ledger_check_entry(new.entry_id);
    return null;
end $$;
create constraint trigger ledger_postings_balance after insert on ledger_postings
    deferrable initially deferred
    for each row execute function ledger_postings_balance();

create function ledger_entries_balance() returns trigger language plpgsql as $$
begin
    perform ledger_check_entry(new.id);
    return null;
end $$;
create constraint trigger ledger_entries_balance after insert on ledger_entries
    deferrable initially deferred
    for each row execute function ledger_entries_balance();

create function ledger_immutable() returns trigger language plpgsql as $$
begin
    raise exception '% rows are immutable', tg_table_name using errcode = 'P0001';
end $$;
create trigger ledger_entries_immutable before update or delete on ledger_entries
    for each row execute function ledger_immutable();
create trigger ledger_postings_immutable before update or delete on ledger_postings
    for each row execute function ledger_immutable();

---- create above / drop below ----

drop table ledger_postings;
drop table ledger_entries;
drop function ledger_immutable();
drop function ledger_entries_balance();
drop function ledger_postings_balance();
drop function ledger_check_entry(bigint);
drop table sms_dev_inbox;
drop table sms_messages;
drop table otp_failures;
drop table otp_codes;
drop table payments;
drop function payments_transition();
drop table autopay_rules;
drop table payment_methods;
drop table household_phones;
