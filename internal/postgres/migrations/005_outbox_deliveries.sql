-- Outbox delivery: every event written to the outbox is delivered to each
-- registered consumer (auto-pay, alerts) once. A trigger adds one delivery
-- row per consumer interested in the event's kind in the same transaction as
-- the event, so no event can be missed by a consumer that polls out of order
-- with the transactions that wrote them. A consumer claims rows with a lease
-- (SKIP LOCKED, so several processes share the work), handles the event
-- idempotently and marks the row done; a crash before that redelivers the
-- event once the lease runs out, and the handler's own idempotency key makes
-- the redelivery change nothing. internal/outbox runs consumers.

create table outbox_consumers (
    name   text primary key check (name ~ '^[a-z][a-z0-9_]*$'),
    -- Event kinds the consumer takes; null takes every kind.
    kinds  text[]
);

create table outbox_deliveries (
    consumer     text not null references outbox_consumers(name),
    outbox_id    bigint not null references outbox(id),
    attempts     int not null default 0 check (attempts >= 0),
    lease_until  timestamptz,
    next_at      timestamptz not null default '-infinity',
    last_error   text not null default '',
    done_at      timestamptz,
    -- dead: given up after the consumer's attempts ran out; kept for an
    -- operator to look at and retry.
    dead         boolean not null default false,
    primary key (consumer, outbox_id)
);
create index outbox_deliveries_due on outbox_deliveries(consumer, next_at, outbox_id)
    where done_at is null and not dead;

-- A statement-level trigger: a bill run inserts thousands of events in one
-- statement, and one insert ... select per statement costs far less than a
-- trigger call per row.
create function outbox_fan_out() returns trigger language plpgsql as $$
begin
    insert into outbox_deliveries (consumer, outbox_id)
    select c.name, n.id from new_events n join outbox_consumers c
        on c.kinds is null or n.kind = any(c.kinds);
    return null;
end $$;
create trigger outbox_fan_out after insert on outbox
    referencing new table as new_events
    for each statement execute function outbox_fan_out();

insert into outbox_consumers (name, kinds) values
    ('autopay', '{bill.issued,accrued.above,balance.below}'),
    ('alerts', null);

-- Events recorded before this migration are delivered too.
insert into outbox_deliveries (consumer, outbox_id)
select c.name, o.id from outbox o cross join outbox_consumers c
 where c.kinds is null or o.kind = any(c.kinds);

---- create above / drop below ----

drop trigger outbox_fan_out on outbox;
drop function outbox_fan_out();
drop table outbox_deliveries;
drop table outbox_consumers;
