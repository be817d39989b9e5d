package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable records which migrations a database has had.
const versionTable = "schema_version"

// Migrations returns the embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder exists
	}
	return sub
}

// MigrationsHash identifies the embedded schema: test harnesses key their
// template databases on it, so a changed migration gets a fresh template.
func MigrationsHash() string {
	h := sha256.New()
	names, _ := fs.Glob(Migrations(), "*.sql")
	sort.Strings(names)
	for _, n := range names {
		b, _ := fs.ReadFile(Migrations(), n)
		h.Write([]byte(n))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Migrate brings the database at url to the latest schema. It takes tern's
// advisory lock, so several processes may call it at once.
func Migrate(ctx context.Context, url string) (from, to int32, err error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, 0, fmt.Errorf("connect for migration: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return 0, 0, fmt.Errorf("new migrator: %w", err)
	}
	if err := m.LoadMigrations(Migrations()); err != nil {
		return 0, 0, fmt.Errorf("load migrations: %w", err)
	}
	from, err = m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return from, 0, fmt.Errorf("migrate: %w", err)
	}
	to, err = m.GetCurrentVersion(ctx)
	return from, to, err
}

// Config is the PostgreSQL connection configuration.
type Config struct {
	URL      string
	MaxConns int32
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("postgres url: must be set"))
	} else if _, err := pgxpool.ParseConfig(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("postgres url: %w", err))
	}
	if c.MaxConns < 0 {
		errs = append(errs, errors.New("postgres max conns: must not be negative"))
	}
	return errors.Join(errs...)
}

// DB is a connection pool to the system of record.
type DB struct {
	Pool *pgxpool.Pool
	// Now is the clock used for timestamps the application writes.
	Now func() time.Time
}

// Open connects a pool. It does not wait for the server: readiness is
// checked with Ping, so the process can start while PostgreSQL is down.
func Open(ctx context.Context, c Config) (*DB, error) {
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	if c.MaxConns > 0 {
		pc.MaxConns = c.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool: %w", err)
	}
	return &DB{Pool: pool, Now: time.Now}, nil
}

// Ping checks that PostgreSQL answers a query.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.Pool.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// InTx runs fn in a transaction, committing when it returns nil. The service
// owns the transaction; the adapter owns the SQL.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.Pool, fn)
}
