#!/usr/bin/env bash
# Local, throwaway PostgreSQL 15 and InfluxDB 1.8.10 for development and tests.
#
#   deploy/local/stack.sh up      start both (installing what is missing); idempotent
#   deploy/local/stack.sh down    stop both
#   deploy/local/stack.sh status  say what runs where
#   deploy/local/stack.sh env     print MF_POSTGRES_URL=... and MF_INFLUX_URL=... (after up)
#   deploy/local/stack.sh reset   stop both and delete their data
#   deploy/local/stack.sh stop-postgres | start-postgres | stop-influx | start-influx
#
# Environment:
#   MF_STACK_NAME   instance name (default "dev"; tests use "test"), so a test run never
#                   touches the data of a running development stack
#   MF_LOCAL_DIR    where instances keep data (default: .local/ in the checkout, git-ignored)
#   MF_STACK_FAST   1 turns off PostgreSQL fsync (tests only: fast, not crash-safe)
#   MF_PG_OPTS      extra PostgreSQL settings for pg_ctl -o, for example
#                   "-c shared_preload_libraries=pg_stat_statements" (applied at start)
#
# Both servers listen on free loopback ports chosen on first start and remembered.
# Stale state (a dead server's pid file, a half-made cluster) is detected and cleaned.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
name=${MF_STACK_NAME:-dev}
base=${MF_LOCAL_DIR:-$repo/.local}
dir="$base/$name"
pgdata="$dir/postgres"
pglog="$dir/postgres.log"
influxdir="$dir/influxdb"
state="$dir/ports.env"
log() { echo "stack[$name]: $*" >&2; }

influx_version=v1.8.10
pg_major=15
pg_user=meterflow

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

# As root, PostgreSQL runs as the postgres user, which must reach its data
# directory. When the checkout sits below a directory it cannot enter (a
# home directory with mode 700, say), the data goes to /var/tmp instead.
if [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
  pgdata="/var/tmp/meterflow-$(printf '%s' "$repo" | md5sum | cut -c1-12)/$name/postgres"
  pglog="$(dirname "$pgdata")/postgres.log"
  mkdir -p "$(dirname "$pgdata")"
  chmod 755 "/var/tmp/meterflow-$(printf '%s' "$repo" | md5sum | cut -c1-12)" "$(dirname "$pgdata")"
fi

# ---------- installation ----------

apt_install() {
  # The first install on a new machine can fail with "cannot access archive":
  # refresh the lists and retry once.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
  fi
}

pg_bin() {
  local d=/usr/lib/postgresql/$pg_major/bin
  if [ ! -x "$d/pg_ctl" ]; then
    log "installing postgresql-$pg_major"
    if [ "$(id -u)" -ne 0 ]; then
      log "postgresql-$pg_major is missing and installing it needs root (apt-get install postgresql-$pg_major)"
      exit 1
    fi
    apt_install "postgresql-$pg_major"
  fi
  echo "$d"
}

influxd_bin() {
  local gobin
  gobin=$(go env GOBIN)
  [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
  local b="$gobin/influxd"
  # go install leaves no version in the binary: a stamp file beside it records which one it is.
  if [ ! -x "$b" ] || [ "$(cat "$b.version" 2>/dev/null)" != "$influx_version" ]; then
    log "building influxd $influx_version (about 2 minutes, once per machine)"
    (cd / && GOFLAGS=-buildvcs=false go install "github.com/influxdata/influxdb/cmd/influxd@$influx_version") >&2
    echo "$influx_version" >"$b.version"
  fi
  echo "$b"
}

# ---------- ports ----------

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local p
  for _ in $(seq 1 200); do
    # Below the kernel's ephemeral range (32768+), so no outgoing connection holds it.
    p=$((20000 + RANDOM % 12000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  log "no free port found"; exit 1
}

load_ports() {
  PG_PORT="" INFLUX_PORT="" INFLUX_RPC_PORT=""
  # shellcheck disable=SC1090
  [ -f "$state" ] && . "$state"
  [ -n "$PG_PORT" ] || PG_PORT=$(pick_port)
  [ -n "$INFLUX_PORT" ] || INFLUX_PORT=$(pick_port)
  [ -n "$INFLUX_RPC_PORT" ] || INFLUX_RPC_PORT=$(pick_port)
  printf 'PG_PORT=%s\nINFLUX_PORT=%s\nINFLUX_RPC_PORT=%s\n' "$PG_PORT" "$INFLUX_PORT" "$INFLUX_RPC_PORT" >"$state"
}

# Run a command as the owner of the PostgreSQL data (initdb refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# ---------- PostgreSQL ----------

pg_running() {
  local bin=$1
  [ -f "$pgdata/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1
}

pg_up() {
  local bin
  bin=$(pg_bin)
  if pg_running "$bin"; then
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then return; fi
    log "postgres runs but not on port $PG_PORT: restarting it"
    as_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null || true
  fi
  if [ -d "$pgdata" ] && [ ! -f "$pgdata/PG_VERSION" ]; then
    log "removing a half-made cluster"
    rm -rf "$pgdata"
  fi
  if [ ! -d "$pgdata" ]; then
    mkdir -p "$pgdata"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pgdata"
    chmod 700 "$pgdata"
    as_pg "$bin/initdb" -D "$pgdata" -U "$pg_user" -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  # The server log is written by the postgres user.
  touch "$pglog"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$pglog"; fi
  # A pid file left by a killed server blocks the start: remove it when its process is gone.
  if [ -f "$pgdata/postmaster.pid" ]; then
    local pid
    pid=$(head -n1 "$pgdata/postmaster.pid")
    if ! kill -0 "$pid" 2>/dev/null; then
      log "removing stale postmaster.pid"
      rm -f "$pgdata/postmaster.pid"
    fi
  fi
  local fast=""
  if [ "${MF_STACK_FAST:-0}" = 1 ]; then fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
  local opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$pgdata -c max_connections=300 -c shared_buffers=256MB -c max_wal_size=2GB -c log_min_messages=warning $fast ${MF_PG_OPTS:-}"
  as_pg "$bin/pg_ctl" -D "$pgdata" -l "$pglog" -o "$opts" -w -t 60 start >/dev/null 9>&- ||
    { tail -n 30 "$pglog" >&2; exit 1; }
  if ! "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$pg_user" -d postgres -tAc "select 1 from pg_database where datname='meterflow'" | grep -q 1; then
    "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$pg_user" meterflow
  fi
}

pg_down() {
  local bin=/usr/lib/postgresql/$pg_major/bin
  [ -x "$bin/pg_ctl" ] || return 0
  if pg_running "$bin"; then as_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null; fi
}

# ---------- InfluxDB ----------

influx_pid() {
  local f="$influxdir/influxd.pid"
  [ -f "$f" ] || return 1
  local pid
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

influx_up() {
  local bin
  bin=$(influxd_bin)
  if influx_pid >/dev/null; then
    if curl -fs -o /dev/null "http://127.0.0.1:$INFLUX_PORT/ping"; then return; fi
    log "influxd runs but does not answer on $INFLUX_PORT: restarting it"
    influx_down
  fi
  rm -f "$influxdir/influxd.pid"
  mkdir -p "$influxdir"
  cat >"$influxdir/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"
[meta]
  dir = "$influxdir/meta"
  logging-enabled = false
[data]
  dir = "$influxdir/data"
  wal-dir = "$influxdir/wal"
  query-log-enabled = false
  trace-logging-enabled = false
  cache-max-memory-size = "2g"
  max-series-per-database = 0
  max-values-per-tag = 0
[coordinator]
  log-queries-after = "0s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$INFLUX_PORT"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  flux-enabled = true
  flux-log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
[continuous_queries]
  enabled = false
EOF
  nohup "$bin" -config "$influxdir/influxdb.conf" -pidfile "$influxdir/influxd.pid" \
    >>"$dir/influxd.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 1 120); do
    if curl -fs -o /dev/null "http://127.0.0.1:$INFLUX_PORT/ping"; then
      curl -fsS -o /dev/null -XPOST "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode "q=CREATE DATABASE meterflow"
      return
    fi
    sleep 0.5
  done
  tail -n 30 "$dir/influxd.log" >&2
  log "influxd did not come up"; exit 1
}

influx_down() {
  local pid
  if pid=$(influx_pid); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$influxdir/influxd.pid"
}

print_env() {
  echo "MF_POSTGRES_URL=postgres://$pg_user@127.0.0.1:$PG_PORT/meterflow?sslmode=disable"
  echo "MF_INFLUX_URL=http://127.0.0.1:$INFLUX_PORT"
}

load_ports
case "${1:-}" in
  up) pg_up; influx_up; print_env ;;
  down) influx_down; pg_down ;;
  reset) influx_down; pg_down; rm -rf "$pgdata" "$influxdir" "$state" ;;
  env) print_env ;;
  start-postgres) pg_up ;;
  stop-postgres) pg_down ;;
  start-influx) influx_up ;;
  stop-influx) influx_down ;;
  status)
    bin=/usr/lib/postgresql/$pg_major/bin
    if [ -x "$bin/pg_ctl" ] && pg_running "$bin"; then echo "postgres: running on 127.0.0.1:$PG_PORT"; else echo "postgres: stopped"; fi
    if influx_pid >/dev/null; then echo "influxdb: running on 127.0.0.1:$INFLUX_PORT"; else echo "influxdb: stopped"; fi
    ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
