package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/phone"
)

// Token prefixes tell a session from an API token before any lookup.
const (
	SessionPrefix  = "mfs_"
	APITokenPrefix = "mfa_"
)

// Config configures the service. Zero fields take defaults.
type Config struct {
	// Key is the server secret (at least 32 bytes) under which sign-in codes
	// are MACed and CSRF tokens derived. KeyID names it, for rotation.
	Key   []byte
	KeyID string
	// SessionTTL is how long a session lives (default 12 h).
	SessionTTL time.Duration
	// OTP is the sign-in code policy (default otp.DefaultPolicy).
	OTP otp.Policy
	// Argon2 is the cost of new password hashes (default DefaultArgon2).
	Argon2 Argon2
	// Region is the country assumed for phone numbers written without a
	// country code (default GB).
	Region string
	Now    func() time.Time
	Logger *slog.Logger
}

// Service signs users in and authenticates requests. It is safe for
// concurrent use.
type Service struct {
	store  Store
	sender Sender
	cfg    Config
	otp    *otp.Issuer
	log    *slog.Logger
	// dummy is a hash checked when the phone is unknown, so that an unknown
	// phone takes as long as a wrong password.
	dummy string
}

// New returns a service after checking its configuration.
func New(store Store, sender Sender, cfg Config) (*Service, error) {
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.OTP == (otp.Policy{}) {
		cfg.OTP = otp.DefaultPolicy()
	}
	if cfg.Argon2 == (Argon2{}) {
		cfg.Argon2 = DefaultArgon2
	}
	if cfg.Region == "" {
		cfg.Region = "GB"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if cfg.SessionTTL < time.Minute || cfg.SessionTTL > 30*24*time.Hour {
		errs = append(errs, errors.New("session ttl: want 1 minute to 30 days"))
	}
	if cfg.Argon2.Memory < 1024 || cfg.Argon2.Time < 1 || cfg.Argon2.Threads < 1 {
		errs = append(errs, errors.New("argon2: want at least 1 MiB, 1 pass, 1 thread"))
	}
	if store == nil || sender == nil {
		errs = append(errs, errors.New("auth: store and sender must be set"))
	}
	issuer, err := otp.NewIssuer(cfg.OTP, cfg.Key, cfg.KeyID, func() time.Time { return cfg.Now() })
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	dummy, err := HashPassword("not a password", cfg.Argon2)
	if err != nil {
		return nil, err
	}
	return &Service{store: store, sender: sender, cfg: cfg, otp: issuer, log: cfg.Logger, dummy: dummy}, nil
}

// ErrSignIn is the one answer to a wrong phone or password: which of the
// two was wrong is never told.
var ErrSignIn = apperr.New(apperr.Unauthorized, "phone number or password is wrong")

// ErrUnauthenticated is the answer to a missing, unknown, expired or revoked
// token.
var ErrUnauthenticated = apperr.New(apperr.Unauthorized, "sign in first")

// NewUser asks for a user.
type NewUser struct {
	Phone       string
	Password    string
	Role        Role
	HouseholdID int64
}

// CreateUser creates a user; the phone number is normalised to E.164.
func (s *Service) CreateUser(ctx context.Context, n NewUser) (User, error) {
	var errs []error
	e164, err := phone.Normalize(n.Phone, s.cfg.Region)
	if err != nil {
		errs = append(errs, err)
	}
	if len(n.Password) < MinPassword || len(n.Password) > MaxPassword {
		errs = append(errs, apperr.Field("password", "must be %d to %d characters", MinPassword, MaxPassword))
	}
	switch {
	case !n.Role.Valid():
		errs = append(errs, apperr.Field("role", "must be household or operator"))
	case n.Role == RoleHousehold && n.HouseholdID <= 0:
		errs = append(errs, apperr.Field("household_id", "a household user names its household"))
	case n.Role == RoleOperator && n.HouseholdID != 0:
		errs = append(errs, apperr.Field("household_id", "an operator belongs to no household"))
	}
	if err := errors.Join(errs...); err != nil {
		return User{}, err
	}
	hash, err := HashPassword(n.Password, s.cfg.Argon2)
	if err != nil {
		return User{}, err
	}
	return s.store.CreateUser(ctx, User{Phone: e164, Role: n.Role, HouseholdID: n.HouseholdID, PasswordHash: hash, CreatedAt: s.cfg.Now()})
}

// User returns a user.
func (s *Service) User(ctx context.Context, id int64) (User, error) { return s.store.User(ctx, id) }

// SignIn checks a phone number and password and, when they are right, sends
// a code to the phone. It returns the challenge the code answers.
func (s *Service) SignIn(ctx context.Context, rawPhone, password string) (string, error) {
	e164, err := phone.Normalize(rawPhone, s.cfg.Region)
	if err != nil {
		return "", err
	}
	if password == "" || len(password) > MaxPassword {
		return "", ErrSignIn
	}
	u, err := s.store.UserByPhone(ctx, e164)
	if apperr.Is(err, apperr.NotFound) {
		_, _ = CheckPassword(s.dummy, password)
		return "", ErrSignIn
	}
	if err != nil {
		return "", err
	}
	ok, err := CheckPassword(u.PasswordHash, password)
	if err != nil {
		return "", fmt.Errorf("user %d: %w", u.ID, err)
	}
	if !ok || u.Disabled {
		return "", ErrSignIn
	}
	id, err := randomString(18)
	if err != nil {
		return "", err
	}
	code, c, err := s.otp.Issue(signInBinding(u, id), 0)
	if err != nil {
		return "", err
	}
	if err := s.store.CreateChallenge(ctx, Challenge{ID: id, UserID: u.ID, Code: c}); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("Meterflow sign-in code: %s. It expires in %d minutes. Never share it; we will never ask for it.",
		code, int(s.cfg.OTP.TTL.Minutes()))
	if _, err := s.sender.Send(ctx, u.Phone, msg); err != nil {
		return "", &apperr.Error{Code: apperr.Unavailable, Message: "the code could not be sent; try again later", Err: err}
	}
	return id, nil
}

func signInBinding(u User, challenge string) otp.Binding {
	return otp.Binding{Purpose: otp.SignIn, Phone: u.Phone, Subject: fmt.Sprintf("user:%d/challenge:%s", u.ID, challenge)}
}

// Grant is an opened session: the token (a cookie or a bearer token) and
// the CSRF token a cookie session must send back with state changes.
type Grant struct {
	Token     string
	CSRF      string
	ExpiresAt time.Time
	User      User
}

// Verify checks a challenge's code and opens a session. Every check counts
// against the challenge, whether or not it succeeds.
func (s *Service) Verify(ctx context.Context, challengeID, code string) (Grant, error) {
	if challengeID == "" || len(challengeID) > 64 {
		return Grant{}, apperr.Field("challenge", "unknown challenge")
	}
	var (
		refused error
		user    User
	)
	err := s.store.UpdateChallenge(ctx, challengeID, func(c *Challenge) error {
		u, err := s.store.User(ctx, c.UserID)
		if err != nil {
			return err
		}
		user = u
		b := signInBinding(u, c.ID)
		c.Code.Binding = b
		_, refused = s.otp.Check(&c.Code, b, code, 0)
		return nil
	})
	if apperr.Is(err, apperr.NotFound) {
		return Grant{}, apperr.Field("challenge", "unknown challenge; sign in again")
	}
	if err != nil {
		return Grant{}, err
	}
	if refused != nil {
		return Grant{}, refused
	}
	if user.Disabled {
		return Grant{}, ErrSignIn
	}
	token, err := newToken(SessionPrefix)
	if err != nil {
		return Grant{}, err
	}
	now := s.cfg.Now()
	sess := Session{UserID: user.ID, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	if _, err := s.store.CreateSession(ctx, sess, hashToken(token)); err != nil {
		return Grant{}, err
	}
	s.log.InfoContext(ctx, "signed in", "user", user.ID, "role", user.Role)
	return Grant{Token: token, CSRF: s.CSRFToken(token), ExpiresAt: sess.ExpiresAt, User: user}, nil
}

// Authenticate returns the principal a token stands for.
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, error) {
	now := s.cfg.Now()
	switch {
	case strings.HasPrefix(token, SessionPrefix):
		sess, u, err := s.store.SessionByTokenHash(ctx, hashToken(token))
		if apperr.Is(err, apperr.NotFound) {
			return Principal{}, ErrUnauthenticated
		}
		if err != nil {
			return Principal{}, err
		}
		if !sess.RevokedAt.IsZero() || !now.Before(sess.ExpiresAt) || u.Disabled {
			return Principal{}, ErrUnauthenticated
		}
		return Principal{UserID: u.ID, Role: u.Role, HouseholdID: u.HouseholdID, SessionID: sess.ID}, nil
	case strings.HasPrefix(token, APITokenPrefix):
		t, err := s.store.APITokenByHash(ctx, hashToken(token))
		if apperr.Is(err, apperr.NotFound) {
			return Principal{}, ErrUnauthenticated
		}
		if err != nil {
			return Principal{}, err
		}
		if !t.RevokedAt.IsZero() || (!t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)) {
			return Principal{}, ErrUnauthenticated
		}
		return Principal{TokenID: t.ID, Scopes: t.Scopes}, nil
	}
	return Principal{}, ErrUnauthenticated
}

// SignOut revokes p's session. Its token is refused from then on.
func (s *Service) SignOut(ctx context.Context, p Principal) error {
	if p.SessionID == 0 {
		return apperr.New(apperr.Invalid, "only a session can sign out")
	}
	return s.store.RevokeSession(ctx, p.SessionID, s.cfg.Now())
}

// CreateAPIToken makes an integrator token with scopes, valid for ttl (0:
// until revoked). The token is returned once; only its hash is kept.
func (s *Service) CreateAPIToken(ctx context.Context, name string, scopes []string, ttl time.Duration, createdBy int64) (string, APIToken, error) {
	if strings.TrimSpace(name) == "" {
		return "", APIToken{}, apperr.Field("name", "must be set")
	}
	if len(scopes) == 0 {
		return "", APIToken{}, apperr.Field("scopes", "name at least one scope")
	}
	token, err := newToken(APITokenPrefix)
	if err != nil {
		return "", APIToken{}, err
	}
	now := s.cfg.Now()
	t := APIToken{Name: name, Scopes: scopes, CreatedBy: createdBy, CreatedAt: now}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if t.ID, err = s.store.CreateAPIToken(ctx, t, hashToken(token)); err != nil {
		return "", APIToken{}, err
	}
	return token, t, nil
}

// CSRFToken derives the CSRF token of a session token: a keyed MAC, so it
// needs no storage and cannot be made without the server key.
func (s *Service) CSRFToken(sessionToken string) string {
	h := hmac.New(sha256.New, s.cfg.Key)
	h.Write([]byte("meterflow-csrf-v1\x00"))
	h.Write([]byte(sessionToken))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// CheckCSRF reports whether csrf is the CSRF token of sessionToken.
func (s *Service) CheckCSRF(sessionToken, csrf string) bool {
	return csrf != "" && hmac.Equal([]byte(s.CSRFToken(sessionToken)), []byte(csrf))
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func newToken(prefix string) (string, error) {
	s, err := randomString(32)
	if err != nil {
		return "", err
	}
	return prefix + s, nil
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
