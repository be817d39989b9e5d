package main

import (
	"context"
	"log/slog"

	"github.com/meterflow/meterflow/internal/postgres"
)

// PostgresFlags are the PostgreSQL settings shared by every subcommand.
type PostgresFlags struct {
	URL      string `name:"postgres-url" env:"MF_POSTGRES_URL" default:"postgres://meterflow@127.0.0.1:5432/meterflow?sslmode=disable" help:"PostgreSQL connection URL (${env})."`
	MaxConns int32  `name:"postgres-max-conns" env:"MF_POSTGRES_MAX_CONNS" default:"16" help:"Largest number of pooled PostgreSQL connections (${env})."`
}

// Config returns the adapter configuration.
func (f PostgresFlags) Config() postgres.Config {
	return postgres.Config{URL: f.URL, MaxConns: f.MaxConns}
}

// MigrateCmd applies the embedded migrations.
type MigrateCmd struct {
	Postgres PostgresFlags `embed:""`
}

// Validate checks the flags before anything runs.
func (c *MigrateCmd) Validate() error { return c.Postgres.Config().Validate() }

// Run applies the migrations.
func (c *MigrateCmd) Run(ctx context.Context, log *slog.Logger) error {
	from, to, err := postgres.Migrate(ctx, c.Postgres.URL)
	if err != nil {
		return err
	}
	log.Info("database migrated", "from_version", from, "to_version", to)
	return nil
}
