-- Delivery reports that arrived before their message's send result: Twilio
-- may call the status callback before the answer to the send has reached
-- the sender and its provider id is recorded, and it does not call again.
-- Only reports with a good signature get here (internal/sms checks it).
-- Payments.SMSResult applies and deletes the report when it records the
-- provider id; reports past expires_at are never applied and are deleted
-- when the next one is kept. sms.Config bounds how many are kept.
create table sms_early_reports (
    provider     text not null,
    provider_id  text not null,
    status       text not null check (status in ('sent', 'delivered', 'failed', 'undelivered')),
    error        text not null default '',
    received_at  timestamptz not null,
    expires_at   timestamptz not null,
    primary key (provider, provider_id)
);
create index sms_early_reports_expires on sms_early_reports(expires_at);

---- create above / drop below ----

drop table sms_early_reports;
