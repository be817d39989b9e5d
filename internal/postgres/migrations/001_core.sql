-- Households, accounts, premises, service points, tariffs and meters: who is
-- billed, where, for what, on which tariff, and which device measures it.

create table households (
    id            bigserial primary key,
    name          text not null check (name <> ''),
    email         text,
    created_at    timestamptz not null default now()
);

create table accounts (
    id               bigserial primary key,
    household_id     bigint not null references households(id),
    number           text not null unique,
    currency         char(3) not null check (currency ~ '^[A-Z]{3}$'),
    time_zone        text not null,
    cycle_anchor_day smallint not null default 1 check (cycle_anchor_day between 1 and 28),
    created_at       timestamptz not null default now()
);
create index accounts_household on accounts(household_id);

create table premises (
    id          bigserial primary key,
    account_id  bigint not null references accounts(id),
    address     text not null default '',
    region      text not null default '',
    created_at  timestamptz not null default now()
);
create index premises_account on premises(account_id);

-- A tariff is versioned inside its definition (internal/tariff's format);
-- a changed tariff is a new row version, never an edit of an old one.
create table tariffs (
    code        text not null,
    revision    int not null,
    utility     text not null check (utility in ('electricity', 'water', 'gas')),
    currency    char(3) not null,
    definition  jsonb not null,
    created_at  timestamptz not null default now(),
    primary key (code, revision)
);

create table service_points (
    id           bigserial primary key,
    premise_id   bigint not null references premises(id),
    utility      text not null check (utility in ('electricity', 'water', 'gas')),
    tariff_code  text,
    created_at   timestamptz not null default now(),
    unique (premise_id, utility)
);

-- A meter authenticates with its id and a device token; only a SHA-256 of the
-- token is kept (tokens are 256-bit random, so a slow hash adds nothing).
create table meters (
    id                text primary key check (id ~ '^[A-Za-z0-9._-]{1,64}$'),
    service_point_id  bigint references service_points(id),
    utility           text not null check (utility in ('electricity', 'water', 'gas')),
    token_hash        bytea not null,
    status            text not null default 'active' check (status in ('active', 'revoked')),
    created_at        timestamptz not null default now(),
    revoked_at        timestamptz
);
create index meters_service_point on meters(service_point_id);

-- Per-meter ingest state (last sequence, recent reads, learned profile), so a
-- meter's validation can resume on any ingest node after a restart.
create table meter_state (
    meter_id    text primary key references meters(id),
    state       bytea not null,
    updated_at  timestamptz not null default now()
);

-- Billing registers: validated interval consumption on the interval grid, in
-- thousandths of the channel's unit. Rows are upserted by key, so replaying a
-- reading changes nothing; a later, better value (an estimate replaced by a
-- measurement) overwrites the earlier one.
create table interval_usage (
    meter_id    text not null references meters(id),
    channel     text not null,
    start_at    timestamptz not null,
    quantity    bigint not null,
    quality     smallint not null,
    updated_at  timestamptz not null default now(),
    primary key (meter_id, channel, start_at)
);

-- VEE exceptions per meter and rule, for operators.
create table vee_exceptions (
    meter_id    text not null references meters(id),
    rule        text not null,
    channel     text not null default '',
    count       bigint not null default 0,
    last_at     timestamptz not null,
    last_detail text not null default '',
    primary key (meter_id, rule, channel)
);

---- create above / drop below ----

drop table vee_exceptions;
drop table interval_usage;
drop table meter_state;
drop table meters;
drop table service_points;
drop table tariffs;
drop table premises;
drop table accounts;
drop table households;
