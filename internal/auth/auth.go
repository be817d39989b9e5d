package auth

import (
	"context"
	"slices"
	"time"

	"github.com/meterflow/meterflow/internal/otp"
)

// Role is what a signed-in user may do.
type Role string

const (
	// RoleHousehold sees only its own household's accounts, bills and usage.
	RoleHousehold Role = "household"
	// RoleOperator runs the fleet and sees every household.
	RoleOperator Role = "operator"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleHousehold || r == RoleOperator }

// User is a person who signs in.
type User struct {
	ID    int64  `json:"id"`
	Phone string `json:"phone"`
	Role  Role   `json:"role"`
	// HouseholdID is set for household users only.
	HouseholdID  int64     `json:"household_id,omitempty"`
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
	Disabled     bool      `json:"-"`
}

// Session is a signed-in session. Only the hash of its token is kept.
type Session struct {
	ID        int64
	UserID    int64
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero: live
}

// APIToken is an integrator's token: it grants its scopes, never a role.
type APIToken struct {
	ID        int64
	Name      string
	Scopes    []string
	CreatedBy int64
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time // zero: live
}

// Challenge is a sign-in waiting for its code.
type Challenge struct {
	ID     string
	UserID int64
	Code   otp.Code
}

// Lockout counts a phone number's wrong passwords. It is kept per number,
// known or not, so that a lockout reveals nothing about which numbers have
// users.
type Lockout struct {
	Phone string
	// Failures counts wrong passwords since WindowStart.
	Failures    int
	WindowStart time.Time
	// LockedUntil, when in the future, refuses every sign-in of the number.
	LockedUntil time.Time
}

// Cleaned is what Cleanup deleted.
type Cleaned struct {
	Sessions   int64
	Challenges int64
	Lockouts   int64
}

// Principal is who makes a request: a user through a session, or an
// integrator through an API token.
type Principal struct {
	UserID      int64
	Role        Role // empty for an API token
	HouseholdID int64
	SessionID   int64
	TokenID     int64
	Scopes      []string
	// Cookie reports a session presented as a cookie: state-changing
	// requests then need the CSRF token as well.
	Cookie bool
}

// IsOperator reports whether p is a signed-in operator.
func (p *Principal) IsOperator() bool { return p != nil && p.SessionID != 0 && p.Role == RoleOperator }

// IsHousehold reports whether p is a signed-in household user.
func (p *Principal) IsHousehold() bool {
	return p != nil && p.SessionID != 0 && p.Role == RoleHousehold && p.HouseholdID > 0
}

// HasScope reports whether p is an API token granted scope.
func (p *Principal) HasScope(scope string) bool {
	return p != nil && p.TokenID != 0 && scope != "" && slices.Contains(p.Scopes, scope)
}

// Store keeps users, challenges, sessions and API tokens. Lookups return an
// apperr NotFound error for what does not exist; CreateUser returns
// Conflict for a phone number already in use.
type Store interface {
	CreateUser(ctx context.Context, u User) (User, error)
	User(ctx context.Context, id int64) (User, error)
	UserByPhone(ctx context.Context, phone string) (User, error)

	CreateChallenge(ctx context.Context, c Challenge) error
	// UpdateChallenge locks a challenge, calls fn, and saves c's code state
	// when fn returns nil. fn returns an error only to roll back.
	UpdateChallenge(ctx context.Context, id string, fn func(c *Challenge) error) error

	CreateSession(ctx context.Context, s Session, tokenHash []byte) (int64, error)
	// SessionByTokenHash returns the session and its user.
	SessionByTokenHash(ctx context.Context, tokenHash []byte) (Session, User, error)
	RevokeSession(ctx context.Context, id int64, at time.Time) error

	CreateAPIToken(ctx context.Context, t APIToken, tokenHash []byte) (int64, error)
	APITokenByHash(ctx context.Context, tokenHash []byte) (APIToken, error)
	// APITokens lists every API token by id; RevokeAPIToken marks one
	// revoked (NotFound when there is none; a second revocation keeps the
	// first time).
	APITokens(ctx context.Context) ([]APIToken, error)
	RevokeAPIToken(ctx context.Context, id int64, at time.Time) error

	// Lockout returns a phone number's lockout state (the zero Lockout with
	// Phone set when there is none).
	Lockout(ctx context.Context, phone string) (Lockout, error)
	// UpdateLockout locks a phone number's lockout state (creating it),
	// calls fn, and saves it when fn returns nil.
	UpdateLockout(ctx context.Context, phone string, fn func(l *Lockout) error) error

	// Cleanup deletes sessions expired at now or revoked, challenges that
	// expired before challengesBefore, and lockouts not locked at now and
	// not updated since lockoutsBefore.
	Cleanup(ctx context.Context, now, challengesBefore, lockoutsBefore time.Time) (Cleaned, error)
}

// Sender delivers a text message; postgres.DevSMS is the development one.
type Sender interface {
	Send(ctx context.Context, to, body string) (providerID string, err error)
}
