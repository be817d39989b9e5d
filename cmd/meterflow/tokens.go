package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/httpapi"
	"github.com/meterflow/meterflow/internal/postgres"
)

// TokensCmd administers integrators' API tokens.
type TokensCmd struct {
	Create TokenCreateCmd `cmd:"" help:"Create an API token; prints it once."`
	List   TokenListCmd   `cmd:"" help:"List API tokens (never the tokens themselves)."`
	Revoke TokenRevokeCmd `cmd:"" help:"Revoke an API token."`
}

// openAuth opens the database and an auth service over it. Token commands
// send no codes, so the key only has to be valid.
func openAuth(ctx context.Context, pf PostgresFlags, log *slog.Logger) (*auth.Service, *postgres.DB, error) {
	db, err := postgres.Open(ctx, pf.Config())
	if err != nil {
		return nil, nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		db.Close()
		return nil, nil, err
	}
	svc, err := auth.New(&postgres.Auth{DB: db}, &postgres.DevSMS{DB: db}, auth.Config{Key: key, Logger: log})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return svc, db, nil
}

// TokenCreateCmd creates an API token.
type TokenCreateCmd struct {
	Postgres PostgresFlags `embed:""`
	Name     string        `required:"" help:"What the token is for (shown in tokens list)."`
	Scopes   []string      `required:"" sep:"," help:"Scopes, comma-separated: ${scopes}."`
	Expires  time.Duration `default:"720h" help:"Lifetime; 0 for a token that lasts until revoked."`
}

// Run creates the token and prints it.
func (c *TokenCreateCmd) Run(ctx context.Context, log *slog.Logger) error {
	return c.run(ctx, log, os.Stdout)
}

func (c *TokenCreateCmd) run(ctx context.Context, log *slog.Logger, out io.Writer) error {
	if err := checkScopes(c.Scopes); err != nil {
		return err
	}
	if c.Expires < 0 {
		return apperr.Field("expires", "must not be negative")
	}
	svc, db, err := openAuth(ctx, c.Postgres, log)
	if err != nil {
		return err
	}
	defer db.Close()
	tok, t, err := svc.CreateAPIToken(ctx, c.Name, c.Scopes, c.Expires, 0)
	if err != nil {
		return err
	}
	expires := "never"
	if !t.ExpiresAt.IsZero() {
		expires = t.ExpiresAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(out, "token %d %q: %s (expires %s)\n", t.ID, t.Name, strings.Join(t.Scopes, ","), expires)
	fmt.Fprintln(out, "It is shown once; only its hash is kept:")
	fmt.Fprintln(out, tok)
	return nil
}

// checkScopes refuses scopes no route admits, so a typo does not make a
// token that can do nothing.
func checkScopes(scopes []string) error {
	if len(scopes) == 0 {
		return apperr.Field("scopes", "name at least one scope")
	}
	for _, s := range scopes {
		if !slices.Contains(httpapi.Scopes, s) {
			return apperr.Field("scopes", "unknown scope %q; want %s", s, strings.Join(httpapi.Scopes, ", "))
		}
	}
	return nil
}

// TokenListCmd lists API tokens.
type TokenListCmd struct {
	Postgres PostgresFlags `embed:""`
}

// Run prints every token's id, name, scopes and state.
func (c *TokenListCmd) Run(ctx context.Context, log *slog.Logger) error {
	return c.run(ctx, log, os.Stdout)
}

func (c *TokenListCmd) run(ctx context.Context, log *slog.Logger, out io.Writer) error {
	svc, db, err := openAuth(ctx, c.Postgres, log)
	if err != nil {
		return err
	}
	defer db.Close()
	ts, err := svc.APITokens(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tCREATED\tEXPIRES\tSTATE")
	for _, t := range ts {
		expires, state := "never", "active"
		if !t.ExpiresAt.IsZero() {
			expires = t.ExpiresAt.UTC().Format(time.RFC3339)
			if !now.Before(t.ExpiresAt) {
				state = "expired"
			}
		}
		if !t.RevokedAt.IsZero() {
			state = "revoked " + t.RevokedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, strings.Join(t.Scopes, ","), t.CreatedAt.UTC().Format(time.RFC3339), expires, state)
	}
	return tw.Flush()
}

// TokenRevokeCmd revokes an API token.
type TokenRevokeCmd struct {
	Postgres PostgresFlags `embed:""`
	ID       int64         `arg:"" help:"Token id (from tokens list)."`
}

// Run revokes the token.
func (c *TokenRevokeCmd) Run(ctx context.Context, log *slog.Logger) error {
	return c.run(ctx, log, os.Stdout)
}

func (c *TokenRevokeCmd) run(ctx context.Context, log *slog.Logger, out io.Writer) error {
	svc, db, err := openAuth(ctx, c.Postgres, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := svc.RevokeAPIToken(ctx, c.ID); err != nil {
		return err
	}
	fmt.Fprintf(out, "token %d revoked\n", c.ID)
	return nil
}
