-- Billing: tariff assignments, bill runs, bills and their lines and registers,
-- accruals during the cycle, budgets and thresholds, a prepaid balance, and the
-- outbox that auto-pay and notifications consume. Money is numeric, never a
-- floating-point type. docs/billing.md describes the model.

-- The first local day an account is billed from (a move-in date). Null: the
-- account is first billed for the most recent cycle that ended.
alter table accounts add column billing_from date;

-- The interval grid a meter's billing registers are written on. The ingest
-- pipeline writes 15-minute intervals; meters read once a day (and large
-- synthetic data sets) use 86400. Billing counts missing intervals on it.
alter table meters add column interval_seconds int not null default 900
    check (interval_seconds in (900, 1800, 3600, 86400));

-- Accruals look for usage changed since their last run; BRIN is nearly free
-- to maintain on a column that grows with insertion order.
create index interval_usage_updated_at on interval_usage using brin (updated_at);

-- A service point's tariff over time: the tariff code in force from each
-- local day (a move-in, a switch). The latest revision of the code prices it.
-- A service point with no row here is on service_points.tariff_code throughout.
create table service_point_tariffs (
    service_point_id  bigint not null references service_points(id),
    effective_from    date not null,
    tariff_code       text not null check (tariff_code <> ''),
    created_at        timestamptz not null default now(),
    primary key (service_point_id, effective_from)
);

-- Daily calorific value of gas (MJ/m3), for gas tariffs priced per kWh. A
-- period's value is the mean of its days; days without one count at the
-- configured default.
create table calorific_values (
    day        date primary key,
    mj_per_m3  numeric not null check (mj_per_m3 > 0 and mj_per_m3 <= 100)
);

-- One row per bill run: what it did and how it ended.
create table bill_runs (
    id             bigserial primary key,
    as_of          timestamptz not null,
    started_at     timestamptz not null,
    finished_at    timestamptz,
    accounts       int not null default 0,
    bills_issued   int not null default 0,
    already_billed int not null default 0,
    nothing_to_bill int not null default 0,
    failed         int not null default 0,
    adjustments    int not null default 0,
    outcome        text not null default 'running'
                   check (outcome in ('running', 'succeeded', 'partial', 'failed')),
    error          text not null default ''
);

-- A bill: one per account and billing period, issued once (the unique key is
-- what makes two concurrent bill runs issue it once). Everything but its
-- status is immutable; corrections are adjustment lines on a later bill.
-- Dates are local days in time_zone; period_end is exclusive.
create table bills (
    id                 bigserial primary key,
    account_id         bigint not null references accounts(id),
    household_id       bigint not null references households(id),
    period_start       date not null,
    period_end         date not null check (period_end > period_start),
    period_start_at    timestamptz not null,
    period_end_at      timestamptz not null,
    time_zone          text not null,
    currency           char(3) not null,
    subtotal           numeric not null,
    tax                numeric not null,
    total              numeric not null check (total = subtotal + tax),
    status             text not null default 'issued'
                       check (status in ('issued', 'paid', 'overdue', 'adjusted')),
    issued_at          timestamptz not null,
    due_date           date not null,
    estimated          boolean not null default false,
    missing_intervals  int not null default 0,
    run_id             bigint references bill_runs(id),
    created_at         timestamptz not null default now(),
    unique (account_id, period_start)
);
create index bills_household on bills(household_id);

-- The lines of a bill: per service point (utility) and charge, as the tariff
-- priced them, each tracing to its registers (meters, channel, first and last
-- interval, metered quantity in thousandths) and to the tariff code, revision
-- and version that priced it. Adjustment lines name the bill they correct.
-- bill_id and the trace columns (service point, meters) are not foreign
-- keys, since checking each of millions of lines costs as much as writing
-- them and would buy nothing: lines are written only in the transaction
-- that inserts their bill, bills cannot be deleted (trigger below), and
-- meters and service points are never deleted.
create table bill_lines (
    bill_id            bigint not null,
    line_no            int not null,
    service_point_id   bigint,
    utility            text,
    kind               text not null,
    name               text not null default '',
    description        text not null,
    quantity           numeric not null,
    unit               text not null,
    unit_price         numeric not null,
    amount             numeric not null,
    estimated          boolean not null default false,
    tariff_code        text not null default '',
    tariff_revision    int not null default 0,
    tariff_version     date,
    meter_ids          text[] not null default '{}',
    channel            text not null default '',
    first_interval_at  timestamptz,
    last_interval_at   timestamptz,
    metered_quantity   bigint not null default 0,
    adjusts_bill_id    bigint references bills(id),
    primary key (bill_id, line_no)
);
create index bill_lines_adjusts on bill_lines(adjusts_bill_id) where adjusts_bill_id is not null;

-- What each bill billed of each meter: the quantity of the primary register
-- over the period, and how complete it was. A bill that corrects an earlier
-- one records the corrected quantity of the earlier period with
-- adjusts_bill_id set; the latest row for (meter, period) is what has been
-- billed, and the next bill run compares it with interval_usage. Like
-- bill_lines, it has no per-row foreign keys but adjusts_bill_id.
create table bill_registers (
    bill_id              bigint not null,
    meter_id             text not null,
    channel              text not null,
    service_point_id     bigint not null,
    period_start_at      timestamptz not null,
    period_end_at        timestamptz not null,
    quantity             bigint not null,
    intervals            int not null,
    estimated_intervals  int not null,
    expected_intervals   int not null,
    first_interval_at    timestamptz,
    last_interval_at     timestamptz,
    adjusts_bill_id      bigint references bills(id),
    primary key (bill_id, meter_id, channel, period_start_at)
);
create index bill_registers_adjusts on bill_registers(adjusts_bill_id) where adjusts_bill_id is not null;

-- Issued bills are immutable: lines and registers never change, and a bill
-- may change only its status.
create function billing_immutable() returns trigger language plpgsql as $$
begin
    raise exception '% rows are immutable once issued', tg_table_name using errcode = 'P0001';
end $$;

create function bills_only_status() returns trigger language plpgsql as $$
begin
    if (new.id, new.account_id, new.household_id, new.period_start, new.period_end,
        new.period_start_at, new.period_end_at, new.time_zone, new.currency,
        new.subtotal, new.tax, new.total, new.issued_at, new.due_date,
        new.estimated, new.missing_intervals, new.run_id)
       is distinct from
       (old.id, old.account_id, old.household_id, old.period_start, old.period_end,
        old.period_start_at, old.period_end_at, old.time_zone, old.currency,
        old.subtotal, old.tax, old.total, old.issued_at, old.due_date,
        old.estimated, old.missing_intervals, old.run_id) then
        raise exception 'an issued bill changes only its status' using errcode = 'P0001';
    end if;
    return new;
end $$;

create trigger bills_only_status before update on bills
    for each row execute function bills_only_status();
create trigger bills_no_delete before delete on bills
    for each row execute function billing_immutable();
create trigger bill_lines_immutable before update or delete on bill_lines
    for each row execute function billing_immutable();
create trigger bill_registers_immutable before update or delete on bill_registers
    for each row execute function billing_immutable();

-- Cost so far of the running cycle per account and utility, kept current by
-- the accrual job, with the projected cost at the end of the cycle.
create table accruals (
    account_id    bigint not null references accounts(id),
    utility       text not null check (utility in ('electricity', 'water', 'gas')),
    cycle_start   date not null,
    cycle_end     date not null,
    through       date not null,        -- exclusive: the days priced
    currency      char(3) not null,
    quantity      bigint not null,      -- thousandths of the register's unit
    amount        numeric not null,     -- tax included
    projected     numeric not null,     -- tax included
    estimated     boolean not null default false,
    updated_at    timestamptz not null,
    primary key (account_id, utility)
);

-- Accrual job runs; the latest finished run's watermark bounds which usage
-- counts as changed.
create table accrual_runs (
    id           bigserial primary key,
    started_at   timestamptz not null default clock_timestamp(),
    finished_at  timestamptz,
    watermark    timestamptz,
    accounts     int not null default 0,
    events       int not null default 0
);

-- Budgets per account (scope 'account') or per utility, in the account's
-- currency per billing cycle, with the percentages that notify.
create table budgets (
    account_id  bigint not null references accounts(id),
    scope       text not null check (scope in ('account', 'electricity', 'water', 'gas')),
    amount      numeric not null check (amount > 0),
    percents    smallint[] not null default '{50,80,100}',
    primary key (account_id, scope)
);

-- Auto-pay and notification thresholds of an account. Null: not set.
create table account_thresholds (
    account_id     bigint primary key references accounts(id),
    accrued_above  numeric check (accrued_above >= 0),
    balance_below  numeric
);

-- Prepaid credit. Top-ups add to it and settled bills draw it down (both
-- posted by payments); during a cycle the available balance is this minus
-- the accrued cost of the cycle.
create table prepaid_balances (
    account_id  bigint primary key references accounts(id),
    balance     numeric not null,
    updated_at  timestamptz not null default now()
);

-- Transactional outbox: events written in the same transaction as the change
-- they report and consumed later (auto-pay, notifications). event_key names
-- the condition and its period, so each is recorded exactly once.
create table outbox (
    id            bigserial primary key,
    event_key     text not null unique,
    kind          text not null,
    account_id    bigint not null references accounts(id),
    payload       jsonb not null,
    occurred_at   timestamptz not null,
    created_at    timestamptz not null default now(),
    published_at  timestamptz
);
create index outbox_unpublished on outbox(id) where published_at is null;

---- create above / drop below ----

drop table outbox;
drop table prepaid_balances;
drop table account_thresholds;
drop table budgets;
drop table accrual_runs;
drop table accruals;
drop table bill_registers;
drop table bill_lines;
drop table bills;
drop function bills_only_status();
drop function billing_immutable();
drop table bill_runs;
drop table calorific_values;
drop table service_point_tariffs;
drop index interval_usage_updated_at;
alter table meters drop column interval_seconds;
alter table accounts drop column billing_from;
