package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

func TestTokens(t *testing.T) {
	ctx := context.Background()
	pg := PostgresFlags{URL: testenv.Postgres(t), MaxConns: 2}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var out bytes.Buffer
	require.NoError(t, (&TokenCreateCmd{Postgres: pg, Name: "billing export", Scopes: []string{"meters:read", "usage:read"}, Expires: 720 * time.Hour}).run(ctx, log, &out))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3, out.String())
	assert.Contains(t, lines[0], `token 1 "billing export": meters:read,usage:read (expires `)
	tok := lines[2]
	require.True(t, strings.HasPrefix(tok, auth.APITokenPrefix), tok)

	out.Reset()
	require.NoError(t, (&TokenCreateCmd{Postgres: pg, Name: "forever", Scopes: []string{"vee:read"}}).run(ctx, log, &out))
	assert.Contains(t, out.String(), "(expires never)")

	// The printed token authenticates with its scopes.
	db, err := postgres.Open(ctx, pg.Config())
	require.NoError(t, err)
	defer db.Close()
	svc, err := auth.New(&postgres.Auth{DB: db}, &postgres.DevSMS{DB: db}, auth.Config{Key: bytes.Repeat([]byte{1}, 32)})
	require.NoError(t, err)
	p, err := svc.Authenticate(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, []string{"meters:read", "usage:read"}, p.Scopes)

	// Unknown scopes, a missing name and a negative lifetime are refused.
	err = (&TokenCreateCmd{Postgres: pg, Name: "x", Scopes: []string{"meters:raed"}}).run(ctx, log, io.Discard)
	require.ErrorContains(t, err, `unknown scope "meters:raed"`)
	err = (&TokenCreateCmd{Postgres: pg, Name: " ", Scopes: []string{"vee:read"}}).run(ctx, log, io.Discard)
	assert.True(t, apperr.Is(err, apperr.Invalid), "%v", err)
	err = (&TokenCreateCmd{Postgres: pg, Name: "x", Scopes: []string{"vee:read"}, Expires: -time.Hour}).run(ctx, log, io.Discard)
	assert.Error(t, err)

	require.NoError(t, (&TokenRevokeCmd{Postgres: pg, ID: 1}).run(ctx, log, io.Discard))
	_, err = svc.Authenticate(ctx, tok)
	assert.ErrorIs(t, err, auth.ErrUnauthenticated, "a revoked token is refused")
	require.NoError(t, (&TokenRevokeCmd{Postgres: pg, ID: 1}).run(ctx, log, io.Discard), "revoking twice is harmless")
	err = (&TokenRevokeCmd{Postgres: pg, ID: 99}).run(ctx, log, io.Discard)
	assert.True(t, apperr.Is(err, apperr.NotFound), "%v", err)

	out.Reset()
	require.NoError(t, (&TokenListCmd{Postgres: pg}).run(ctx, log, &out))
	rows := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, rows, 3, out.String())
	assert.Regexp(t, `^ID\s+NAME\s+SCOPES\s+CREATED\s+EXPIRES\s+STATE$`, rows[0])
	assert.Regexp(t, `^1\s+billing export\s+meters:read,usage:read\s+\S+\s+\S+\s+revoked `, rows[1])
	assert.Regexp(t, `^2\s+forever\s+vee:read\s+\S+\s+never\s+active$`, rows[2])
	assert.NotContains(t, out.String(), tok, "the list never shows a token")
}
