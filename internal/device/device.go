package device

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/meter"
)

// Status is a meter's provisioning state.
type Status string

const (
	Active  Status = "active"
	Revoked Status = "revoked"
)

// Credential is what authentication needs to know of a meter.
type Credential struct {
	ID        string
	Utility   meter.Utility
	Model     string
	TokenHash []byte
	Status    Status
}

// Meter is a provisioned meter as listed to operators.
type Meter struct {
	ID             string        `json:"id"`
	Utility        meter.Utility `json:"utility"`
	Model          string        `json:"model,omitempty"`
	ServicePointID *int64        `json:"service_point_id,omitempty"`
	Status         Status        `json:"status"`
	CreatedAt      time.Time     `json:"created_at"`
	RevokedAt      *time.Time    `json:"revoked_at,omitempty"`
}

// NewMeter is a meter to create.
type NewMeter struct {
	ID             string
	Utility        meter.Utility
	Model          string
	ServicePointID *int64
	TokenHash      []byte
}

// Store persists meters. Implementations return an apperr NotFound error for
// an unknown meter and Conflict for an id that exists.
type Store interface {
	CreateMeters(ctx context.Context, ms []NewMeter) error
	MeterCredential(ctx context.Context, id string) (Credential, error)
	RevokeMeter(ctx context.Context, id string, at time.Time) error
	ListMeters(ctx context.Context, after string, limit int) ([]Meter, error)
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidID reports whether id is a well-formed meter id (docs/protocol.md).
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Request asks for one meter to be provisioned.
type Request struct {
	ID      string
	Utility meter.Utility
	// Model is the meter's type, which selects its VEE rules ("" for its
	// utility's).
	Model          string
	ServicePointID *int64
}

// Provisioned is a new meter with its token. The token exists only here:
// the store keeps its hash.
type Provisioned struct {
	ID      string        `json:"meter_id"`
	Utility meter.Utility `json:"utility"`
	Token   string        `json:"token"`
}

// HashToken hashes a device token for storage. Tokens carry 256 random
// bits, so a fast hash is as strong as a slow one here.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// NewToken returns a fresh random device token.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return "mft_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Identity is an authenticated meter.
type Identity struct {
	ID      string
	Utility meter.Utility
	Model   string
}

// ErrAuth is returned for every failed authentication; the reason is logged
// and counted, never told to the client.
var ErrAuth = apperr.New(apperr.Unauthorized, "meter authentication failed")

// Config tunes the registry.
type Config struct {
	// CacheTTL is how long a known meter's credential is trusted without
	// asking the store (default 5 min). A revocation made through this
	// registry takes effect at once; one made on another node within CacheTTL.
	CacheTTL time.Duration
	// NegativeTTL is how long an unknown meter id is remembered (default 10 s).
	NegativeTTL time.Duration
	// MaxEntries bounds the cache (default 1,000,000).
	MaxEntries int
	Now        func() time.Time
	Logger     *slog.Logger
}

type cached struct {
	cred    Credential
	missing bool
	expires time.Time
}

// Registry provisions and authenticates meters. It is safe for concurrent use.
type Registry struct {
	store Store
	cfg   Config
	group singleflight.Group

	mu    sync.RWMutex
	cache map[string]cached
}

// NewRegistry returns a registry over store.
func NewRegistry(store Store, cfg Config) *Registry {
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = 10 * time.Second
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1_000_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{store: store, cfg: cfg, cache: make(map[string]cached)}
}

// Provision creates meters and returns their tokens. Either all are created
// or none.
func (r *Registry) Provision(ctx context.Context, reqs []Request) ([]Provisioned, error) {
	seen := make(map[string]bool, len(reqs))
	news := make([]NewMeter, 0, len(reqs))
	out := make([]Provisioned, 0, len(reqs))
	for i, q := range reqs {
		if !ValidID(q.ID) {
			return nil, apperr.Field(fmt.Sprintf("meters[%d].id", i), "%q is not a meter id (1 to 64 of A-Z a-z 0-9 . _ -)", q.ID)
		}
		if !q.Utility.Valid() {
			return nil, apperr.Field(fmt.Sprintf("meters[%d].utility", i), "%q is not electricity, water or gas", q.Utility)
		}
		if seen[q.ID] {
			return nil, apperr.Field(fmt.Sprintf("meters[%d].id", i), "%q appears twice", q.ID)
		}
		if q.Model != "" && !ValidID(q.Model) {
			return nil, apperr.Field(fmt.Sprintf("meters[%d].model", i), "%q is not a model name (1 to 64 of A-Z a-z 0-9 . _ -)", q.Model)
		}
		seen[q.ID] = true
		tok, err := NewToken()
		if err != nil {
			return nil, err
		}
		news = append(news, NewMeter{ID: q.ID, Utility: q.Utility, Model: q.Model, ServicePointID: q.ServicePointID, TokenHash: HashToken(tok)})
		out = append(out, Provisioned{ID: q.ID, Utility: q.Utility, Token: tok})
	}
	if err := r.store.CreateMeters(ctx, news); err != nil {
		return nil, err
	}
	r.mu.Lock()
	for _, n := range news {
		delete(r.cache, n.ID) // forget a cached "unknown"
	}
	r.mu.Unlock()
	return out, nil
}

// Revoke refuses a meter from now on; it is dropped from the cache at once.
func (r *Registry) Revoke(ctx context.Context, id string) error {
	if err := r.store.RevokeMeter(ctx, id, r.cfg.Now()); err != nil {
		return err
	}
	r.Forget(id)
	return nil
}

// Forget drops a meter from the cache, so its next authentication asks the store.
func (r *Registry) Forget(id string) {
	r.mu.Lock()
	delete(r.cache, id)
	r.mu.Unlock()
}

// List lists meters by id, after the given id.
func (r *Registry) List(ctx context.Context, after string, limit int) ([]Meter, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return r.store.ListMeters(ctx, after, limit)
}

// Authenticate checks a meter's token. It returns ErrAuth for an unknown or
// revoked meter or a wrong token, and another error when the store cannot
// be reached (the caller should refuse the connection without blaming the
// meter).
func (r *Registry) Authenticate(ctx context.Context, id, token string) (Identity, error) {
	cred, err := r.Lookup(ctx, id)
	if err != nil {
		return Identity{}, err
	}
	if subtle.ConstantTimeCompare(HashToken(token), cred.TokenHash) != 1 {
		return Identity{}, ErrAuth
	}
	return Identity{ID: cred.ID, Utility: cred.Utility, Model: cred.Model}, nil
}

// Lookup returns an active meter's credential from the cache or the store;
// ErrAuth when it is unknown or revoked.
func (r *Registry) Lookup(ctx context.Context, id string) (Credential, error) {
	if !ValidID(id) {
		return Credential{}, ErrAuth
	}
	now := r.cfg.Now()
	r.mu.RLock()
	c, ok := r.cache[id]
	r.mu.RUnlock()
	if !ok || now.After(c.expires) {
		v, err, _ := r.group.Do(id, func() (any, error) {
			cred, err := r.store.MeterCredential(ctx, id)
			e := cached{cred: cred}
			switch {
			case apperr.Is(err, apperr.NotFound):
				e.missing = true
				e.expires = now.Add(r.cfg.NegativeTTL)
			case err != nil:
				return nil, fmt.Errorf("look up meter %s: %w", id, err)
			default:
				e.expires = now.Add(r.cfg.CacheTTL)
			}
			r.mu.Lock()
			if len(r.cache) >= r.cfg.MaxEntries {
				clear(r.cache) // crude but bounded; entries refill on demand
			}
			r.cache[id] = e
			r.mu.Unlock()
			return e, nil
		})
		if err != nil {
			return Credential{}, err
		}
		c = v.(cached)
	}
	if c.missing || c.cred.Status != Active {
		return Credential{}, ErrAuth
	}
	return c.cred, nil
}

// IsAuthError reports whether err is an authentication refusal (as opposed
// to the store being unreachable).
func IsAuthError(err error) bool { return errors.Is(err, ErrAuth) }
