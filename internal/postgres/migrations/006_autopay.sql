-- Auto-pay enrolment and its confirmation by one-time password, payments that
-- a household allowed without a code (small prepaid top-ups), and the
-- posting of issued bills to the ledger. docs/payments.md describes them.

-- An auto-pay rule is created pending and takes effect only when the
-- household confirms it with a code sent to its verified phone: a rule can
-- spend money, so it is confirmed like a payment. A change replaces the rule
-- and needs a new confirmation.
alter table autopay_rules alter column enabled set default false;
alter table autopay_rules add column confirmed_at timestamptz;
alter table autopay_rules add column disabled_at timestamptz;
-- otp_free_below: a top-up rule may let top-ups up to this amount (and never
-- above max_amount) be charged without a code, if the household chose so.
alter table autopay_rules add column otp_free_below numeric check (otp_free_below > 0);
alter table autopay_rules add constraint autopay_rules_otp_free_topup_only
    check (otp_free_below is null or trigger = 'balance_below');
alter table autopay_rules add constraint autopay_rules_enabled_confirmed
    check (not enabled or confirmed_at is not null);

-- Codes that confirm an auto-pay rule.
alter table otp_codes drop constraint otp_codes_purpose_check;
alter table otp_codes add constraint otp_codes_purpose_check
    check (purpose in ('payment_confirm', 'phone_verify', 'autopay_enrol'));
alter table otp_codes add column autopay_rule_id bigint references autopay_rules(id);
alter table otp_codes add constraint otp_codes_autopay_rule
    check ((purpose = 'autopay_enrol') = (autopay_rule_id is not null));
create unique index otp_codes_autopay_rule on otp_codes(autopay_rule_id) where autopay_rule_id is not null;

-- A payment whose rule allowed it without a code goes from created straight
-- to confirmed; every other payment needs its code.
alter table payments add column requires_otp boolean not null default true;
-- What the gateway kept of a succeeded charge (booked to fees:gateway).
alter table payments add column fee numeric not null default 0 check (fee >= 0 and fee < amount);

create or replace function payments_transition() returns trigger language plpgsql as $$
begin
    if new.state = old.state then
        return new;
    end if;
    if (old.state, new.state) not in (
        ('created', 'otp_sent'), ('created', 'expired'), ('created', 'canceled'),
        ('otp_sent', 'confirmed'), ('otp_sent', 'expired'), ('otp_sent', 'canceled'),
        ('confirmed', 'charging'),
        ('charging', 'succeeded'), ('charging', 'failed'))
       and not (old.state = 'created' and new.state = 'confirmed' and not new.requires_otp) then
        raise exception 'payment %: % -> % is not allowed', old.id, old.state, new.state using errcode = 'P0001';
    end if;
    return new;
end $$;

-- Issued bills are posted to the ledger (the household owes the total) by
-- the ledger consumer of bill.issued events.
insert into outbox_consumers (name, kinds) values ('ledger', '{bill.issued}');
insert into outbox_deliveries (consumer, outbox_id)
select 'ledger', o.id from outbox o where o.kind = 'bill.issued';

---- create above / drop below ----

delete from outbox_deliveries where consumer = 'ledger';
delete from outbox_consumers where name = 'ledger';
create or replace function payments_transition() returns trigger language plpgsql as $$
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
alter table payments drop column fee;
alter table payments drop column requires_otp;
drop index otp_codes_autopay_rule;
alter table otp_codes drop constraint otp_codes_autopay_rule;
alter table otp_codes drop column autopay_rule_id;
alter table otp_codes drop constraint otp_codes_purpose_check;
alter table otp_codes add constraint otp_codes_purpose_check check (purpose in ('payment_confirm', 'phone_verify'));
alter table autopay_rules drop constraint autopay_rules_enabled_confirmed;
alter table autopay_rules drop constraint autopay_rules_otp_free_topup_only;
alter table autopay_rules drop column otp_free_below;
alter table autopay_rules drop column disabled_at;
alter table autopay_rules drop column confirmed_at;
alter table autopay_rules alter column enabled set default true;
