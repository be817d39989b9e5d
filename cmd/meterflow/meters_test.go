package main

import (
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

func TestMetersProvisionBulkRevoke(t *testing.T) {
	ctx := context.Background()
	pg := PostgresFlags{URL: testenv.Postgres(t), MaxConns: 4}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := filepath.Join(t.TempDir(), "fleet.csv")
	require.NoError(t, (&ProvisionBulkCmd{Postgres: pg, Count: 25, Prefix: "T-", Start: 1, Utility: "mixed", Out: out}).Run(ctx, log))

	f, err := os.Open(out)
	require.NoError(t, err)
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	require.NoError(t, err)
	require.Len(t, rows, 26)
	assert.Equal(t, []string{"meter_id", "utility", "token"}, rows[0])
	assert.Equal(t, []string{"T-0000001", "electricity"}, rows[1][:2])
	assert.Equal(t, "water", rows[2][1])
	assert.Equal(t, "gas", rows[3][1])

	db, err := postgres.Open(ctx, pg.Config())
	require.NoError(t, err)
	defer db.Close()
	reg := device.NewRegistry(&postgres.Meters{DB: db}, device.Config{})
	_, err = reg.Authenticate(ctx, rows[5][0], rows[5][2])
	require.NoError(t, err, "the token written to the file authenticates its meter")

	// Provisioning the same ids again is refused and changes nothing.
	err = (&ProvisionBulkCmd{Postgres: pg, Count: 5, Prefix: "T-", Start: 20, Utility: "gas", Out: filepath.Join(t.TempDir(), "again.csv")}).Run(ctx, log)
	require.Error(t, err)
	ms, err := reg.List(ctx, "", 1000)
	require.NoError(t, err)
	assert.Len(t, ms, 25)

	// A CSV input with a bad utility names the line.
	in := filepath.Join(t.TempDir(), "in.csv")
	require.NoError(t, os.WriteFile(in, []byte("id,utility\nX-1,electricity\nX-2,steam\n"), 0o600))
	err = (&ProvisionBulkCmd{Postgres: pg, From: in, Out: filepath.Join(t.TempDir(), "x.csv")}).Run(ctx, log)
	require.ErrorContains(t, err, "line 3")

	require.NoError(t, (&RevokeCmd{Postgres: pg, ID: rows[5][0]}).Run(ctx))
	_, err = device.NewRegistry(&postgres.Meters{DB: db}, device.Config{}).Authenticate(ctx, rows[5][0], rows[5][2])
	require.ErrorIs(t, err, device.ErrAuth)
}
