-- Sign-in and access control: users (household members and operators),
-- sign-in challenges (a one-time password sent by SMS after the password),
-- sessions, and API tokens for integrators. Secrets are never stored: a
-- password as an argon2id hash, a session or API token as a SHA-256 of its
-- 256 random bits, a sign-in code as an HMAC under a server key.

-- A user signs in with a phone number (E.164) and a password. A household
-- user sees only its household's accounts; an operator sees all of them and
-- runs the fleet.
create table users (
    id             bigserial primary key,
    phone          text not null unique check (phone ~ '^\+[1-9][0-9]{6,14}$'),
    password_hash  text not null check (password_hash like '$argon2id$%'),
    role           text not null check (role in ('household', 'operator')),
    household_id   bigint references households(id),
    created_at     timestamptz not null default now(),
    disabled_at    timestamptz,
    check ((role = 'household') = (household_id is not null))
);
create index users_household on users(household_id) where household_id is not null;

-- A sign-in in progress: the password was right and a code was sent to the
-- user's phone. The id given to the client is random, so a challenge cannot
-- be guessed; attempts count every check of its code.
create table sign_in_challenges (
    id            text primary key check (length(id) between 16 and 64),
    user_id       bigint not null references users(id),
    mac           bytea not null check (length(mac) = 32),
    key_id        text not null default '',
    expires_at    timestamptz not null,
    attempts      int not null default 0 check (attempts >= 0),
    sends         int not null default 1 check (sends >= 1),
    last_sent_at  timestamptz not null,
    used_at       timestamptz,
    created_at    timestamptz not null
);
create index sign_in_challenges_user on sign_in_challenges(user_id);
create index sign_in_challenges_expires on sign_in_challenges(expires_at);

-- A signed-in session. The same token is the browser's cookie and an API
-- client's bearer token. Sign-out sets revoked_at.
create table sessions (
    id          bigserial primary key,
    token_hash  bytea not null unique check (length(token_hash) = 32),
    user_id     bigint not null references users(id),
    created_at  timestamptz not null,
    expires_at  timestamptz not null,
    revoked_at  timestamptz
);
create index sessions_user on sessions(user_id);
create index sessions_expires on sessions(expires_at);

-- API tokens for integrators: a token grants exactly its scopes
-- ("meters:write", "meters:read", "vee:read", ...), never a role.
create table api_tokens (
    id          bigserial primary key,
    name        text not null check (name <> ''),
    token_hash  bytea not null unique check (length(token_hash) = 32),
    scopes      text[] not null default '{}',
    created_by  bigint references users(id),
    created_at  timestamptz not null,
    expires_at  timestamptz,
    revoked_at  timestamptz
);

---- create above / drop below ----

drop table api_tokens;
drop table sessions;
drop table sign_in_challenges;
drop table users;
