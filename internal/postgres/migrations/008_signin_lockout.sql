-- Sign-in lockout: wrong passwords counted per phone number (E.164), whether
-- or not a user has that number, so a lockout says nothing about which
-- numbers exist. internal/auth owns the policy; rows past their window and
-- lock are deleted by auth.Service.Cleanup.
create table sign_in_lockouts (
    phone         text primary key,
    failures      int not null default 0 check (failures >= 0),
    window_start  timestamptz,
    locked_until  timestamptz,
    updated_at    timestamptz not null
);
create index sign_in_lockouts_updated on sign_in_lockouts(updated_at);

---- create above / drop below ----

drop table sign_in_lockouts;
