-- Household alerts and operator alarms (internal/alert, docs/alerts.md).
--
-- An alert is decided once per condition and period: alert_key names both
-- (kind:account:...:period), and the alert and its deliveries are inserted
-- in one transaction, so a decision made twice (a second evaluator pass, a
-- redelivered outbox event) changes nothing. Deliveries are an outbox of
-- their own: a sender claims due rows under a lease, sends, and marks them
-- sent; a crash before that hands the row to the next claim after the lease.

create table alerts (
    id            bigserial primary key,
    alert_key     text not null unique check (alert_key <> ''),
    household_id  bigint not null references households(id),
    account_id    bigint references accounts(id),
    kind          text not null check (kind ~ '^[a-z][a-z0-9_.]*$'),
    title         text not null,
    body          text not null,
    data          jsonb not null default '{}',
    created_at    timestamptz not null,
    read_at       timestamptz
);
create index alerts_household on alerts(household_id, id);

-- One row per alert and channel the household's preferences chose when the
-- alert was decided. inapp is the inbox and the live push to open portals;
-- sms goes through the SMS sender and is held (not_before) until the
-- household's quiet hours end.
create table alert_deliveries (
    alert_id     bigint not null references alerts(id),
    channel      text not null check (channel in ('inapp', 'sms')),
    status       text not null default 'pending' check (status in ('pending', 'sent', 'skipped', 'dead')),
    not_before   timestamptz not null,
    next_at      timestamptz not null default '-infinity',
    lease_until  timestamptz,
    attempts     int not null default 0 check (attempts >= 0),
    last_error   text not null default '',
    sms_id       bigint references sms_messages(id),
    sent_at      timestamptz,
    primary key (alert_id, channel)
);
create index alert_deliveries_pending on alert_deliveries(alert_id) where status = 'pending';

-- A household's choices: channels per alert kind (kinds not listed take the
-- defaults of internal/alert) and quiet hours in its local time (the time
-- zone of its first account). quiet_start = quiet_end: no quiet hours.
create table alert_preferences (
    household_id  bigint primary key references households(id),
    channels      jsonb not null default '{}',
    quiet_start   time,
    quiet_end     time,
    updated_at    timestamptz not null,
    check ((quiet_start is null) = (quiet_end is null))
);

-- Operator alarms: one open (active or acknowledged) alarm per kind and
-- subject at a time; a condition that clears and comes back is a new alarm.
-- alarm_events is the history of every transition.
create table alarms (
    id               bigserial primary key,
    kind             text not null check (kind ~ '^[a-z][a-z0-9_]*$'),
    subject          text not null default '',
    state            text not null default 'active' check (state in ('active', 'acknowledged', 'cleared')),
    message          text not null,
    raised_at        timestamptz not null,
    last_seen_at     timestamptz not null,
    acknowledged_at  timestamptz,
    acknowledged_by  bigint references users(id),
    cleared_at       timestamptz
);
create unique index alarms_open on alarms(kind, subject) where state <> 'cleared';
create index alarms_state on alarms(state, id);

create table alarm_events (
    id        bigserial primary key,
    alarm_id  bigint not null references alarms(id),
    state     text not null check (state in ('active', 'acknowledged', 'cleared')),
    at        timestamptz not null,
    user_id   bigint references users(id),
    note      text not null default ''
);
create index alarm_events_alarm on alarm_events(alarm_id, id);

-- The VEE exception total of each meter when the alarm evaluator last
-- measured its rate; the next measurement a window later takes the
-- difference.
create table vee_exception_marks (
    meter_id  text primary key references meters(id),
    total     bigint not null,
    at        timestamptz not null
);

---- create above / drop below ----

drop table vee_exception_marks;
drop table alarm_events;
drop table alarms;
drop table alert_preferences;
drop table alert_deliveries;
drop table alerts;
