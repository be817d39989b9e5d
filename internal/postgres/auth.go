package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
)

// Auth keeps users, sign-in challenges, sessions and API tokens.
type Auth struct{ DB *DB }

var _ auth.Store = (*Auth)(nil)

const userColumns = `u.id, u.phone, u.role, coalesce(u.household_id, 0), u.password_hash, u.created_at, u.disabled_at is not null`

func scanUser(row pgx.Row, u *auth.User) error {
	var role string
	err := row.Scan(&u.ID, &u.Phone, &role, &u.HouseholdID, &u.PasswordHash, &u.CreatedAt, &u.Disabled)
	u.Role = auth.Role(role)
	return err
}

// CreateUser inserts a user.
func (s *Auth) CreateUser(ctx context.Context, u auth.User) (auth.User, error) {
	err := s.DB.Pool.QueryRow(ctx, `insert into users (phone, password_hash, role, household_id, created_at)
		values ($1, $2, $3, $4, $5) returning id`, u.Phone, u.PasswordHash, string(u.Role), nullID(u.HouseholdID), u.CreatedAt).Scan(&u.ID)
	if isUniqueViolation(err, "users_phone_key") {
		return u, &apperr.Error{Code: apperr.Conflict, Field: "phone", Message: "a user with this phone number exists"}
	}
	if isForeignKeyViolation(err) {
		return u, &apperr.Error{Code: apperr.NotFound, Field: "household_id", Message: "no such household"}
	}
	if err != nil {
		return u, fmt.Errorf("insert user: %w", err)
	}
	return u, nil
}

// User returns a user by id.
func (s *Auth) User(ctx context.Context, id int64) (auth.User, error) {
	var u auth.User
	err := scanUser(s.DB.Pool.QueryRow(ctx, `select `+userColumns+` from users u where u.id = $1`, id), &u)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, apperr.New(apperr.NotFound, "user %d not found", id)
	}
	if err != nil {
		return u, fmt.Errorf("user %d: %w", id, err)
	}
	return u, nil
}

// UserByPhone returns a user by E.164 phone number.
func (s *Auth) UserByPhone(ctx context.Context, phone string) (auth.User, error) {
	var u auth.User
	err := scanUser(s.DB.Pool.QueryRow(ctx, `select `+userColumns+` from users u where u.phone = $1`, phone), &u)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, apperr.New(apperr.NotFound, "user not found")
	}
	if err != nil {
		return u, fmt.Errorf("user by phone: %w", err)
	}
	return u, nil
}

// CreateChallenge inserts a sign-in challenge.
func (s *Auth) CreateChallenge(ctx context.Context, c auth.Challenge) error {
	_, err := s.DB.Pool.Exec(ctx, `insert into sign_in_challenges
		(id, user_id, mac, key_id, expires_at, attempts, sends, last_sent_at, created_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.ID, c.UserID, c.Code.MAC, c.Code.KeyID, c.Code.ExpiresAt, c.Code.Attempts, c.Code.Sends, c.Code.LastSentAt, c.Code.CreatedAt)
	if err != nil {
		return fmt.Errorf("insert sign-in challenge: %w", err)
	}
	return nil
}

// UpdateChallenge locks a challenge, lets fn change its code state, and
// saves it.
func (s *Auth) UpdateChallenge(ctx context.Context, id string, fn func(c *auth.Challenge) error) error {
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		c := auth.Challenge{ID: id}
		var used *time.Time
		err := tx.QueryRow(ctx, `select user_id, mac, key_id, expires_at, attempts, sends, last_sent_at, used_at, created_at
			from sign_in_challenges where id = $1 for update`, id).Scan(&c.UserID, &c.Code.MAC, &c.Code.KeyID,
			&c.Code.ExpiresAt, &c.Code.Attempts, &c.Code.Sends, &c.Code.LastSentAt, &used, &c.Code.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.New(apperr.NotFound, "sign-in challenge not found")
		}
		if err != nil {
			return fmt.Errorf("sign-in challenge: %w", err)
		}
		c.Code.UsedAt = derefTime(used)
		if err := fn(&c); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `update sign_in_challenges set mac = $2, key_id = $3, expires_at = $4, attempts = $5,
			sends = $6, last_sent_at = $7, used_at = $8 where id = $1`, id, c.Code.MAC, c.Code.KeyID, c.Code.ExpiresAt,
			c.Code.Attempts, c.Code.Sends, c.Code.LastSentAt, nullTime(c.Code.UsedAt))
		if err != nil {
			return fmt.Errorf("save sign-in challenge: %w", err)
		}
		return nil
	})
}

// CreateSession inserts a session.
func (s *Auth) CreateSession(ctx context.Context, sess auth.Session, tokenHash []byte) (int64, error) {
	var id int64
	err := s.DB.Pool.QueryRow(ctx, `insert into sessions (token_hash, user_id, created_at, expires_at)
		values ($1, $2, $3, $4) returning id`, tokenHash, sess.UserID, sess.CreatedAt, sess.ExpiresAt).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert session: %w", err)
	}
	return id, nil
}

// SessionByTokenHash returns a session and its user.
func (s *Auth) SessionByTokenHash(ctx context.Context, tokenHash []byte) (auth.Session, auth.User, error) {
	var sess auth.Session
	var u auth.User
	var revoked *time.Time
	var role string
	err := s.DB.Pool.QueryRow(ctx, `select s.id, s.user_id, s.created_at, s.expires_at, s.revoked_at, `+userColumns+`
		from sessions s join users u on u.id = s.user_id where s.token_hash = $1`, tokenHash).Scan(
		&sess.ID, &sess.UserID, &sess.CreatedAt, &sess.ExpiresAt, &revoked,
		&u.ID, &u.Phone, &role, &u.HouseholdID, &u.PasswordHash, &u.CreatedAt, &u.Disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return sess, u, apperr.New(apperr.NotFound, "session not found")
	}
	if err != nil {
		return sess, u, fmt.Errorf("session: %w", err)
	}
	u.Role, sess.RevokedAt = auth.Role(role), derefTime(revoked)
	return sess, u, nil
}

// RevokeSession marks a session revoked (once; a second call changes nothing).
func (s *Auth) RevokeSession(ctx context.Context, id int64, at time.Time) error {
	if _, err := s.DB.Pool.Exec(ctx, `update sessions set revoked_at = coalesce(revoked_at, $2) where id = $1`, id, at); err != nil {
		return fmt.Errorf("revoke session %d: %w", id, err)
	}
	return nil
}

// CreateAPIToken inserts an API token.
func (s *Auth) CreateAPIToken(ctx context.Context, t auth.APIToken, tokenHash []byte) (int64, error) {
	var id int64
	err := s.DB.Pool.QueryRow(ctx, `insert into api_tokens (name, token_hash, scopes, created_by, created_at, expires_at)
		values ($1, $2, $3, $4, $5, $6) returning id`, t.Name, tokenHash, t.Scopes, nullID(t.CreatedBy), t.CreatedAt, nullTime(t.ExpiresAt)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert api token: %w", err)
	}
	return id, nil
}

// APITokenByHash returns an API token.
func (s *Auth) APITokenByHash(ctx context.Context, tokenHash []byte) (auth.APIToken, error) {
	var t auth.APIToken
	var createdBy *int64
	var expires, revoked *time.Time
	err := s.DB.Pool.QueryRow(ctx, `select id, name, scopes, created_by, created_at, expires_at, revoked_at
		from api_tokens where token_hash = $1`, tokenHash).Scan(&t.ID, &t.Name, &t.Scopes, &createdBy, &t.CreatedAt, &expires, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, apperr.New(apperr.NotFound, "api token not found")
	}
	if err != nil {
		return t, fmt.Errorf("api token: %w", err)
	}
	if createdBy != nil {
		t.CreatedBy = *createdBy
	}
	t.ExpiresAt, t.RevokedAt = derefTime(expires), derefTime(revoked)
	return t, nil
}

func isForeignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// APITokens lists every API token by id.
func (s *Auth) APITokens(ctx context.Context) ([]auth.APIToken, error) {
	rows, err := s.DB.Pool.Query(ctx, `select id, name, scopes, coalesce(created_by, 0), created_at, expires_at, revoked_at
		from api_tokens order by id`)
	if err != nil {
		return nil, fmt.Errorf("api tokens: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (auth.APIToken, error) {
		var t auth.APIToken
		var expires, revoked *time.Time
		err := r.Scan(&t.ID, &t.Name, &t.Scopes, &t.CreatedBy, &t.CreatedAt, &expires, &revoked)
		t.ExpiresAt, t.RevokedAt = derefTime(expires), derefTime(revoked)
		return t, err
	})
}

// RevokeAPIToken marks an API token revoked; revoking it again keeps the
// first time.
func (s *Auth) RevokeAPIToken(ctx context.Context, id int64, at time.Time) error {
	tag, err := s.DB.Pool.Exec(ctx, `update api_tokens set revoked_at = coalesce(revoked_at, $2) where id = $1`, id, at)
	if err != nil {
		return fmt.Errorf("revoke api token %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return apperr.New(apperr.NotFound, "api token %d not found", id)
	}
	return nil
}

func scanLockout(row pgx.Row, l *auth.Lockout) error {
	var ws, lu *time.Time
	err := row.Scan(&l.Failures, &ws, &lu)
	l.WindowStart, l.LockedUntil = derefTime(ws), derefTime(lu)
	return err
}

// Lockout returns a phone number's wrong-password count and lock.
func (s *Auth) Lockout(ctx context.Context, phone string) (auth.Lockout, error) {
	l := auth.Lockout{Phone: phone}
	err := scanLockout(s.DB.Pool.QueryRow(ctx, `select failures, window_start, locked_until from sign_in_lockouts where phone = $1`, phone), &l)
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.Lockout{Phone: phone}, nil
	}
	if err != nil {
		return l, fmt.Errorf("sign-in lockout: %w", err)
	}
	return l, nil
}

// UpdateLockout locks (creating) a phone number's lockout row, lets fn
// change it, and saves it.
func (s *Auth) UpdateLockout(ctx context.Context, phone string, fn func(l *auth.Lockout) error) error {
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `insert into sign_in_lockouts (phone, updated_at) values ($1, now()) on conflict (phone) do nothing`, phone); err != nil {
			return fmt.Errorf("sign-in lockout: %w", err)
		}
		l := auth.Lockout{Phone: phone}
		if err := scanLockout(tx.QueryRow(ctx, `select failures, window_start, locked_until from sign_in_lockouts where phone = $1 for update`, phone), &l); err != nil {
			return fmt.Errorf("sign-in lockout: %w", err)
		}
		if err := fn(&l); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `update sign_in_lockouts set failures = $2, window_start = $3, locked_until = $4, updated_at = now() where phone = $1`,
			phone, l.Failures, nullTime(l.WindowStart), nullTime(l.LockedUntil))
		if err != nil {
			return fmt.Errorf("save sign-in lockout: %w", err)
		}
		return nil
	})
}

// Cleanup deletes expired or revoked sessions, long-expired challenges and
// idle lockouts.
func (s *Auth) Cleanup(ctx context.Context, now, challengesBefore, lockoutsBefore time.Time) (auth.Cleaned, error) {
	var c auth.Cleaned
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `delete from sessions where expires_at <= $1 or revoked_at is not null`, now)
		if err != nil {
			return fmt.Errorf("delete sessions: %w", err)
		}
		c.Sessions = tag.RowsAffected()
		if tag, err = tx.Exec(ctx, `delete from sign_in_challenges where expires_at < $1`, challengesBefore); err != nil {
			return fmt.Errorf("delete sign-in challenges: %w", err)
		}
		c.Challenges = tag.RowsAffected()
		if tag, err = tx.Exec(ctx, `delete from sign_in_lockouts where (locked_until is null or locked_until <= $1)
			and (window_start is null or window_start < $2) and updated_at < $2`, now, lockoutsBefore); err != nil {
			return fmt.Errorf("delete sign-in lockouts: %w", err)
		}
		c.Lockouts = tag.RowsAffected()
		return nil
	})
	return c, err
}
