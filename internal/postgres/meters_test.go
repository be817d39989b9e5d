package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

// countingStore counts how often the registry reaches the database.
type countingStore struct {
	device.Store
	lookups atomic.Int64
}

func (c *countingStore) MeterCredential(ctx context.Context, id string) (device.Credential, error) {
	c.lookups.Add(1)
	return c.Store.MeterCredential(ctx, id)
}

func TestMeterProvisioningAndAuthentication(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: &postgres.Meters{DB: testenv.PostgresDB(t)}}
	reg := device.NewRegistry(store, device.Config{})

	got, err := reg.Provision(ctx, []device.Request{
		{ID: "E-1", Utility: meter.Electricity},
		{ID: "W-1", Utility: meter.Water},
	})
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.NotEqual(t, got[0].Token, got[1].Token)

	id, err := reg.Authenticate(ctx, "E-1", got[0].Token)
	require.NoError(t, err)
	assert.Equal(t, meter.Electricity, id.Utility)

	cases := []struct {
		name, id, token string
	}{
		{"wrong token", "E-1", got[1].Token},
		{"empty token", "E-1", ""},
		{"unknown meter", "E-404", got[0].Token},
		{"malformed id", "E 1;drop", got[0].Token},
		{"another meter's token", "W-1", got[0].Token},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := reg.Authenticate(ctx, c.id, c.token)
			require.ErrorIs(t, err, device.ErrAuth)
		})
	}

	// A duplicate id refuses the whole batch.
	_, err = reg.Provision(ctx, []device.Request{{ID: "G-1", Utility: meter.Gas}, {ID: "E-1", Utility: meter.Electricity}})
	assert.Equal(t, apperr.Conflict, apperr.CodeOf(err))
	_, err = reg.Authenticate(ctx, "G-1", "x")
	require.ErrorIs(t, err, device.ErrAuth, "nothing of a refused batch is created")

	// Revocation takes effect at once.
	require.NoError(t, reg.Revoke(ctx, "E-1"))
	_, err = reg.Authenticate(ctx, "E-1", got[0].Token)
	require.ErrorIs(t, err, device.ErrAuth)
	assert.Equal(t, apperr.NotFound, apperr.CodeOf(reg.Revoke(ctx, "nope")))

	list, err := reg.List(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, device.Revoked, list[0].Status)
	assert.NotNil(t, list[0].RevokedAt)
}

func TestAuthenticationStormHitsTheStoreOncePerMeter(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: &postgres.Meters{DB: testenv.PostgresDB(t)}}
	reg := device.NewRegistry(store, device.Config{CacheTTL: time.Hour})
	var reqs []device.Request
	for i := range 50 {
		reqs = append(reqs, device.Request{ID: "M-" + string(rune('A'+i%26)) + string(rune('a'+i/26)), Utility: meter.Electricity})
	}
	prov, err := reg.Provision(ctx, reqs)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 20 {
		for _, p := range prov {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := reg.Authenticate(ctx, p.ID, p.Token)
				assert.NoError(t, err)
			}()
		}
	}
	wg.Wait()
	assert.LessOrEqual(t, store.lookups.Load(), int64(len(prov)), "a reconnect storm must be served from the cache")
}

// A meter's model is stored, listed and carried into its identity, where
// the ingest pipeline picks its VEE rules by it.
func TestMeterModel(t *testing.T) {
	ctx := context.Background()
	reg := device.NewRegistry(&postgres.Meters{DB: testenv.PostgresDB(t)}, device.Config{})
	out, err := reg.Provision(ctx, []device.Request{{ID: "E-M", Utility: meter.Electricity, Model: "EM-5D"}, {ID: "E-N", Utility: meter.Electricity}})
	require.NoError(t, err)
	id, err := reg.Authenticate(ctx, "E-M", out[0].Token)
	require.NoError(t, err)
	assert.Equal(t, "EM-5D", id.Model)
	id, err = reg.Authenticate(ctx, "E-N", out[1].Token)
	require.NoError(t, err)
	assert.Empty(t, id.Model)
	ms, err := reg.List(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	assert.Equal(t, "EM-5D", ms[0].Model)

	_, err = reg.Provision(ctx, []device.Request{{ID: "E-X", Utility: meter.Electricity, Model: "bad model!"}})
	var ae *apperr.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "meters[0].model", ae.Field)
}
