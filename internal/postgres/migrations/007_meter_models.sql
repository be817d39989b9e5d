-- A meter's model (its type: register digits, rated maximum), which selects
-- its VEE rules (docs/vee.md, --vee-rules). Empty: its utility's rules.
alter table meters add column model text not null default ''
    check (model ~ '^([A-Za-z0-9._-]{1,64})?$');

---- create above / drop below ----

alter table meters drop column model;
