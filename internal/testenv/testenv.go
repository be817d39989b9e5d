// Package testenv gives tests real services: a fresh, migrated PostgreSQL
// database and a fresh InfluxDB database per test.
//
// The servers come from the environment when set:
//
//	MF_TEST_POSTGRES_URL  a PostgreSQL URL whose user may create databases
//	MF_TEST_INFLUX_URL    an InfluxDB 1.8 (flux-enabled) or 2.x URL
//	MF_TEST_INFLUX_TOKEN  the token for InfluxDB 2.x (empty for 1.8)
//	MF_TEST_INFLUX_ORG    the organisation for InfluxDB 2.x (empty for 1.8)
//
// Otherwise the harness starts the local stack itself once per machine
// (deploy/local/stack.sh with MF_STACK_NAME=test) and every test binary of a
// `go test ./...` run shares it. Tests that need a service fail, never skip,
// when it cannot be had: a green run must mean the test ran.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meterflow/meterflow/internal/postgres"
)

// RepoRoot returns the directory holding go.mod, found by walking up from
// the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

type stackEnv struct {
	postgresURL string
	influxURL   string
	err         error
}

var (
	stackOnce sync.Once
	stack     stackEnv
	counter   atomic.Int64
)

func localStack(t testing.TB) stackEnv {
	t.Helper()
	stackOnce.Do(func() {
		stack.postgresURL = os.Getenv("MF_TEST_POSTGRES_URL")
		stack.influxURL = os.Getenv("MF_TEST_INFLUX_URL")
		if stack.postgresURL != "" && stack.influxURL != "" {
			return
		}
		script := filepath.Join(RepoRoot(t), "deploy", "local", "stack.sh")
		cmd := exec.Command("bash", script, "up")
		cmd.Env = append(os.Environ(), "MF_STACK_NAME=test", "MF_STACK_FAST=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			stack.err = fmt.Errorf("start local stack: %v\n%s", err, stderr.String())
			return
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "=")
			switch k {
			case "MF_POSTGRES_URL":
				if stack.postgresURL == "" {
					stack.postgresURL = v
				}
			case "MF_INFLUX_URL":
				if stack.influxURL == "" {
					stack.influxURL = v
				}
			}
		}
	})
	if stack.err != nil {
		t.Fatalf("testenv: %v", stack.err)
	}
	return stack
}

// uniqueName makes a database name no other test process uses at the same time.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1_000_000_000, counter.Add(1))
}

// withDatabase replaces the database name in a PostgreSQL URL.
func withDatabase(t testing.TB, raw, db string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("testenv: bad postgres url: %v", err)
	}
	u.Path = "/" + db
	return u.String()
}

// PostgresAdminURL returns the URL of the test server's maintenance database.
func PostgresAdminURL(t testing.TB) string {
	return withDatabase(t, localStack(t).postgresURL, "postgres")
}

// Postgres returns the URL of a fresh database with the current schema,
// dropped when the test ends. It is cloned from a template migrated once per
// schema version, so it costs a few milliseconds.
func Postgres(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := PostgresAdminURL(t)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("testenv: connect to postgres: %v", err)
	}
	defer conn.Close(context.Background())

	tmpl := "mf_template_" + postgres.MigrationsHash()
	// One process at a time builds the template; the others wait for it.
	if _, err := conn.Exec(ctx, "select pg_advisory_lock(727274)"); err != nil {
		t.Fatalf("testenv: lock: %v", err)
	}
	var exists bool
	err = conn.QueryRow(ctx, "select exists(select 1 from pg_database where datname=$1 and datistemplate)", tmpl).Scan(&exists)
	if err == nil && !exists {
		err = buildTemplate(ctx, conn, admin, tmpl)
	}
	_, _ = conn.Exec(ctx, "select pg_advisory_unlock(727274)")
	if err != nil {
		t.Fatalf("testenv: template database: %v", err)
	}

	name := uniqueName("mf_test")
	if _, err := conn.Exec(ctx, fmt.Sprintf("create database %s template %s", name, tmpl)); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, fmt.Sprintf("drop database if exists %s with (force)", name))
	})
	return withDatabase(t, admin, name)
}

func buildTemplate(ctx context.Context, conn *pgx.Conn, admin, tmpl string) error {
	building := tmpl + "_build"
	_, _ = conn.Exec(ctx, fmt.Sprintf("drop database if exists %s with (force)", building))
	if _, err := conn.Exec(ctx, fmt.Sprintf("create database %s", building)); err != nil {
		return err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return err
	}
	u.Path = "/" + building
	if _, _, err := postgres.Migrate(ctx, u.String()); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("alter database %s rename to %s", building, tmpl)); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf("alter database %s is_template true", tmpl))
	return err
}

// PostgresDB opens a pool on a fresh database (see Postgres), closed when the
// test ends.
func PostgresDB(t testing.TB) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: Postgres(t), MaxConns: 8})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// Influx is one fresh InfluxDB database, addressed the way InfluxDB 2.x
// clients address a bucket (InfluxDB 1.8 maps bucket "db/rp" onto it).
type Influx struct {
	URL      string
	Token    string
	Org      string
	Bucket   string
	Database string
}

// InfluxDB creates a fresh database, dropped when the test ends.
func InfluxDB(t testing.TB) Influx {
	t.Helper()
	base := localStack(t).influxURL
	name := uniqueName("mf_test")
	influxQuery(t, base, "CREATE DATABASE "+name)
	t.Cleanup(func() { influxQuery(nil, base, "DROP DATABASE "+name) })
	influxWaitDatabase(t, base, name)
	return Influx{
		URL:      base,
		Token:    os.Getenv("MF_TEST_INFLUX_TOKEN"),
		Org:      os.Getenv("MF_TEST_INFLUX_ORG"),
		Bucket:   name + "/autogen",
		Database: name,
	}
}

// InfluxURL returns the base URL of the test InfluxDB server.
func InfluxURL(t testing.TB) string { return localStack(t).influxURL }

// influxQuery runs an InfluxQL statement. InfluxDB answers a failed
// statement with 200 and the error in the body, so the body is checked too.
func influxQuery(t testing.TB, base, q string) string {
	resp, err := http.PostForm(base+"/query", url.Values{"q": {q}})
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct {
			Error   string `json:"error"`
			Results []struct {
				Error string `json:"error"`
			} `json:"results"`
		}
		switch {
		case err != nil:
		case resp.StatusCode/100 != 2:
			err = fmt.Errorf("status %s: %s", resp.Status, bytes.TrimSpace(body))
		case json.Unmarshal(body, &out) != nil:
			err = fmt.Errorf("answer %q", body)
		case out.Error != "":
			err = errors.New(out.Error)
		case len(out.Results) > 0 && out.Results[0].Error != "":
			err = errors.New(out.Results[0].Error)
		}
	}
	if err != nil && t != nil {
		t.Fatalf("testenv: influx %q: %v", q, err)
	}
	return string(body)
}

// influxWaitDatabase waits until the server lists a database it created:
// writes right after CREATE DATABASE were seen, rarely, to answer
// "database not found".
func influxWaitDatabase(t testing.TB, base, name string) {
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(influxQuery(t, base, "SHOW DATABASES"), `"`+name+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: influx database %s not listed after CREATE DATABASE", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
