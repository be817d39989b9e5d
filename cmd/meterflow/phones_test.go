package main

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

func TestPhonesAddAndDevInbox(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	db, err := postgres.Open(ctx, postgres.Config{URL: url})
	require.NoError(t, err)
	defer db.Close()
	var hh int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&hh))

	pg := PostgresFlags{URL: url, MaxConns: 2}
	require.NoError(t, (&PhonesAddCmd{Postgres: pg, Household: hh, Phone: "07400 123456", Region: "GB"}).Run(ctx))
	var verified bool
	require.NoError(t, db.Pool.QueryRow(ctx, `select verified_at is not null from household_phones where household_id = $1 and e164 = '+447400123456'`, hh).Scan(&verified))
	assert.True(t, verified)
	assert.Error(t, (&PhonesAddCmd{Postgres: pg, Household: hh, Phone: "12", Region: "GB"}).Run(ctx), "not a number")

	_, err = (&postgres.DevSMS{DB: db}).Send(ctx, "+447400123456", "Meterflow: 123456 is your code")
	require.NoError(t, err)
	out := captureStdout(t, func() {
		require.NoError(t, (&SMSInboxCmd{Postgres: pg, To: "+44 7400 123456", Region: "GB", Limit: 5}).Run(ctx))
	})
	assert.Contains(t, out, "123456 is your code")
}

// captureStdout returns what fn writes to standard output.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stdout = old }()
	fn()
	require.NoError(t, w.Close())
	os.Stdout = old
	return <-done
}
