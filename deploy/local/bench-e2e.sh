#!/usr/bin/env bash
# `make bench-e2e`: the end-to-end load benchmark on this machine.
#
#   firmware-sim (load mode) ──MQTT──▶ meterflow serve ──▶ InfluxDB + PostgreSQL
#
# 1. starts the `bench` instance of the local stack (deploy/local/stack.sh, normal
#    durability) and creates a fresh PostgreSQL and InfluxDB database for the run
# 2. migrates, provisions METERS electricity meters and one probe meter
# 3. starts `meterflow serve` (journal in the run directory, --pprof) on free ports
# 4. runs firmware-sim in load mode (RATE messages/s for DURATION, acked log on),
#    the latency probe beside it, a 30 s CPU profile of the server mid-run, and
#    samples /metrics, RSS and CPU time of server, InfluxDB, PostgreSQL and simulator
# 5. waits until mf_ingest_lag_records is 0, then checks that every acknowledged
#    (meter, seq) is in InfluxDB and has its interval in PostgreSQL (firmware-sim/verify)
# 6. prints a summary (also summary.json in the run directory)
#
# Environment (defaults in brackets):
#   METERS [2000]          meters in the fleet (each holds one MQTT connection)
#   RATE [5000]            messages/s across the fleet; 0 = as fast as acknowledgements come back
#   DURATION [60s]         length of the load (Go duration: 90s, 2m)
#   WORKERS [8]            --ingest-workers of the server (its default, 2, cannot keep up: docs/performance.md)
#   BATCH_SIZE, FLUSH_INTERVAL, PG_MAX_CONNS   server tuning (default: the server's defaults)
#   SERVE_ARGS, SIM_ARGS   extra flags for meterflow serve / firmware-sim
#   CONNECT_RATE [2000]    new connections per second of the simulator
#   DRAIN [30s]            time the simulator gets after the run to hand over what it holds
#   SOURCE_ADDRS           comma-separated 127.0.0.x addresses to connect from (past ~28,000 meters)
#   PROBE [1]              publish→queryable probe (one extra meter, every PROBE_INTERVAL [200ms])
#   PROFILE [1]            30 s CPU profile of the server in the middle of the run, a 5 s
#                          execution trace (scheduler latency, blocking) and a goroutine dump
#   VERIFY [1]             loss check after the run
#   LAG_TIMEOUT [900]      seconds to wait for the pipeline to catch up after the run
#   KEEP_STACK [0]         1 leaves the bench stack running at the end
#   KEEP_DATA [0]          1 keeps the run's databases (else they are dropped)
#   BENCH_DIR [.local/bench-runs]  where run directories go
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

METERS=${METERS:-2000}
RATE=${RATE:-5000}
DURATION=${DURATION:-60s}
WORKERS=${WORKERS:-8}
BATCH_SIZE=${BATCH_SIZE:-}
FLUSH_INTERVAL=${FLUSH_INTERVAL:-}
PG_MAX_CONNS=${PG_MAX_CONNS:-}
SERVE_ARGS=${SERVE_ARGS:-}
SIM_ARGS=${SIM_ARGS:-}
CONNECT_RATE=${CONNECT_RATE:-2000}
DRAIN=${DRAIN:-30s}
SOURCE_ADDRS=${SOURCE_ADDRS:-}
PROBE=${PROBE:-1}
PROBE_INTERVAL=${PROBE_INTERVAL:-200ms}
PROFILE=${PROFILE:-1}
VERIFY=${VERIFY:-1}
LAG_TIMEOUT=${LAG_TIMEOUT:-900}
KEEP_STACK=${KEEP_STACK:-0}
KEEP_DATA=${KEEP_DATA:-0}
BENCH_DIR=${BENCH_DIR:-$repo/.local/bench-runs}
BIN=${BIN:-$repo/bin}

log() { echo "bench-e2e: $*" >&2; }
die() { log "$*"; exit 1; }

# seconds of a Go-style duration: 90, 90s, 2m, 1m30s, 1h
dur_s() {
  local d=$1 total=0 n
  if [[ $d =~ ^[0-9]+$ ]]; then echo "$d"; return; fi
  while [[ $d =~ ^([0-9]+)([hms])(.*)$ ]]; do
    n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]} in h) total=$((total + n * 3600)) ;; m) total=$((total + n * 60)) ;; s) total=$((total + n)) ;; esac
    d=${BASH_REMATCH[3]}
  done
  [ -z "$d" ] || die "cannot read duration '$1' (use 90s, 2m, 1m30s)"
  echo "$total"
}
duration_s=$(dur_s "$DURATION")
drain_s=$(dur_s "$DRAIN")
[ "$duration_s" -ge 10 ] || die "DURATION must be at least 10s"
for b in meterflow firmware-sim; do [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run make build"; done

# Every meter holds a socket in the server and in the simulator: take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [ "$METERS" -gt $((nofile - 200)) ]; then
  log "warning: open file limit $nofile (hard $(ulimit -Hn)) is below METERS=$METERS plus headroom; connections past it will fail"
fi

run_id="$(date -u +%Y%m%d-%H%M%S)-m${METERS}-r${RATE}"
run="$BENCH_DIR/$run_id"
mkdir -p "$run"
db="bench_$(date -u +%Y%m%d_%H%M%S)_$$"
log "run directory $run"

# ---------- stack ----------
export MF_STACK_NAME=bench
stack="$here/stack.sh"
started_stack=0
status=$("$stack" status)
if [[ $status != *"postgres: running"* || $status != *"influxdb: running"* ]]; then started_stack=1; fi
eval "$("$stack" up | sed 's/^/export /')"
admin_url=$MF_POSTGRES_URL
pg_url=${admin_url/\/meterflow\?//$db?}
influx_url=$MF_INFLUX_URL
stack_dir="${MF_LOCAL_DIR:-$repo/.local}/bench"
psql=/usr/lib/postgresql/15/bin/psql
[ -x "$psql" ] || psql=psql

pids=()
server_pid="" sim_pid="" probe_pid="" sampler_pid="" watchdog_pid=""
cleanup() {
  local rc=$?
  set +e
  for p in "$watchdog_pid" "$sampler_pid" "$probe_pid" "$sim_pid"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null
  done
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    for _ in $(seq 1 60); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$server_pid" 2>/dev/null
  fi
  wait 2>/dev/null
  if [ "$KEEP_DATA" != 1 ]; then
    "$psql" -q "$admin_url" -c "drop database if exists $db" >/dev/null 2>&1
    curl -fsS -o /dev/null -XPOST "$influx_url/query" --data-urlencode "q=DROP DATABASE \"$db\"" 2>/dev/null
    rm -rf "$run/journal"
  fi
  if [ "$started_stack" = 1 ] && [ "$KEEP_STACK" != 1 ]; then
    "$stack" down
  elif [ "$KEEP_STACK" = 1 ]; then
    log "bench stack left running: MF_STACK_NAME=bench $stack down stops it"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$psql" -q "$admin_url" -c "create database $db" >/dev/null
curl -fsS -o /dev/null -XPOST "$influx_url/query" --data-urlencode "q=CREATE DATABASE \"$db\""
export MF_POSTGRES_URL=$pg_url MF_INFLUX_URL=$influx_url MF_INFLUX_BUCKET="$db/autogen"
"$BIN/meterflow" migrate 2>>"$run/setup.log"

log "provisioning $METERS meters"
t0=$(date +%s.%N)
"$BIN/meterflow" meters provision-bulk --count "$METERS" --prefix BENCH- --utility electricity --out "$run/fleet.csv" 2>>"$run/setup.log"
"$BIN/meterflow" meters provision-bulk --count 1 --prefix PROBE- --utility electricity --out "$run/probe.csv" 2>>"$run/setup.log"
provision_s=$(echo "$(date +%s.%N) - $t0" | bc)

# ---------- server ----------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  die "no free port"
}
http_addr="127.0.0.1:$(pick_port)"
mqtt_addr="127.0.0.1:$(pick_port)"
serve_flags=(--http-addr "$http_addr" --mqtt-addr "$mqtt_addr" --journal-dir "$run/journal" --pprof
  --ingest-workers "$WORKERS")
[ -n "$BATCH_SIZE" ] && serve_flags+=(--ingest-batch-size "$BATCH_SIZE")
[ -n "$FLUSH_INTERVAL" ] && serve_flags+=(--ingest-flush-interval "$FLUSH_INTERVAL")
[ -n "$PG_MAX_CONNS" ] && serve_flags+=(--postgres-max-conns "$PG_MAX_CONNS")
# shellcheck disable=SC2206
serve_flags+=($SERVE_ARGS)
echo "meterflow serve ${serve_flags[*]}" >"$run/commands.txt"
start_server() {
  "$BIN/meterflow" serve "${serve_flags[@]}" >>"$run/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 150); do
    curl -fs -o /dev/null "http://$http_addr/readyz" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.2
  done
  curl -fs -o /dev/null "http://$http_addr/readyz" || { tail -n 30 "$run/server.log" >&2; die "server did not become ready"; }
}
start_server
server_restarts=0
metric() { curl -fs --max-time 5 "http://$http_addr/metrics" | awk -v m="$1" '$1 == m { v = $2; f = 1 } END { if (f) printf "%.0f\n", v }' || true; }

influx_pid=$(cat "$stack_dir/influxdb/influxd.pid")
# stack.sh may keep PostgreSQL's data outside the checkout: ask the server where.
pg_data=$("$psql" -tA "$admin_url" -c "select setting from pg_settings where name = 'data_directory'")
pg_pid=$(head -n1 "$pg_data/postmaster.pid")
clk=$(getconf CLK_TCK)

# kB of resident memory; for PostgreSQL the proportional share (Pss) of the
# postmaster and every backend, so that shared buffers count once.
rss_kb() { local v; v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || true; echo "${v:-0}"; }
pg_pss_kb() {
  local total=0 p v
  for p in "$pg_pid" $(ps --ppid "$pg_pid" -o pid= 2>/dev/null); do
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) || true
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
# CPU time in clock ticks (user + system); PostgreSQL: postmaster, live
# backends and reaped ones.
cpu_ticks() { local v; v=$(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null) || true; echo "${v:-0}"; }
pg_cpu_ticks() {
  local total p v
  total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pg_pid/stat" 2>/dev/null) || true
  total=${total:-0}
  for p in $(ps --ppid "$pg_pid" -o pid= 2>/dev/null); do
    v=$(cpu_ticks "$p")
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

sample() {
  local m sim
  m=$(curl -fs --max-time 2 "http://$http_addr/metrics" | awk '
      $1 == "mf_ingest_messages_total" { a = $2 } $1 == "mf_ingest_readings_total" { b = $2 }
      $1 == "mf_ingest_lag_records" { c = $2 } $1 == "mf_journal_checkpoint_offset" { d = $2 }
      $1 == "mf_journal_pending_bytes" { e = $2 } $1 == "mf_mqtt_connected_meters" { f = $2 }
      END { printf "%.0f,%.0f,%.0f,%.0f,%.0f,%.0f", a, b, c, d, e, f }') || m=",,,,,"
  sim=$(cat "$run/sim.pid" 2>/dev/null || echo 0)
  echo "$(date +%s.%N),$m,$(rss_kb "$server_pid"),$(rss_kb "$influx_pid"),$(pg_pss_kb),$(rss_kb "$sim"),$(cpu_ticks "$server_pid"),$(cpu_ticks "$influx_pid"),$(pg_cpu_ticks),$(cpu_ticks "$sim"),$(cut -d' ' -f1 /proc/loadavg),$(machine_ticks)"
}
# busy CPU time of the whole machine (every process, ours and others')
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
sampler() {
  echo "ts,messages,readings,lag,checkpoint,pending_bytes,connected,server_rss_kb,influxd_rss_kb,postgres_pss_kb,sim_rss_kb,server_cpu,influxd_cpu,postgres_cpu,sim_cpu,load1,machine_cpu"
  while true; do
    sample
    sleep 1
  done
}
sampler >"$run/samples.csv" 2>/dev/null &
sampler_pid=$!
sleep 2
server_rss_idle=$(rss_kb "$server_pid")
uptime_before=$(uptime)

# ---------- load ----------
warmup_s=$(((METERS + CONNECT_RATE - 1) / CONNECT_RATE + 5))
if [ $((warmup_s + 10)) -gt "$duration_s" ]; then warmup_s=$((duration_s / 4)); fi
sim_flags=(--broker "tcp://$mqtt_addr" --credentials "$run/fleet.csv" --rate "$RATE" --duration "$DURATION"
  --drain "$DRAIN" --connect-rate "$CONNECT_RATE" --acked-log "$run/acked.csv" --progress off)
[ -n "$SOURCE_ADDRS" ] && sim_flags+=(--source-addrs "$SOURCE_ADDRS")
# shellcheck disable=SC2206
sim_flags+=($SIM_ARGS)
echo "firmware-sim ${sim_flags[*]}" >>"$run/commands.txt"

if [ "$PROBE" = 1 ]; then
  probe_flags=(probe --broker "tcp://$mqtt_addr" --credentials "$run/probe.csv" --influx-url "$influx_url"
    --influx-bucket "$db/autogen" --interval "$PROBE_INTERVAL" --duration "$((duration_s - 2))s")
  echo "verify ${probe_flags[*]}" >>"$run/commands.txt"
  "$BIN/verify" "${probe_flags[@]}" >"$run/probe.json" 2>"$run/probe.log" &
  probe_pid=$!
fi

log "load: $METERS meters, rate $RATE msg/s, $DURATION (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
sim_start=$(date +%s.%N)
"$BIN/firmware-sim" "${sim_flags[@]}" >"$run/sim.json" 2>"$run/sim.log" &
sim_pid=$!
echo "$sim_pid" >"$run/sim.pid"
limit=$((duration_s + drain_s * 2 + METERS / CONNECT_RATE + 120))
(
  end=$(($(date +%s) + limit))
  while [ "$(date +%s)" -lt "$end" ]; do
    sleep 1
    kill -0 "$sim_pid" 2>/dev/null || exit 0
  done
  log "firmware-sim overran ${limit}s: stopping it"
  kill -TERM "$sim_pid"
) 2>/dev/null &
watchdog_pid=$!

if [ "$PROFILE" = 1 ]; then
  prof_off=$(((duration_s - 30) / 2))
  [ "$prof_off" -lt "$warmup_s" ] && prof_off=$warmup_s
  prof_s=$((duration_s - prof_off - 1))
  [ "$prof_s" -gt 30 ] && prof_s=30
  if [ "$prof_s" -ge 5 ]; then
    (sleep "$prof_off" && curl -fs -o "$run/cpu.pprof" "http://$http_addr/debug/pprof/profile?seconds=$prof_s") &
    prof_pid=$!
    (sleep "$((prof_off + 2))" && curl -fs -o "$run/trace.out" "http://$http_addr/debug/pprof/trace?seconds=5" &&
      curl -fs -o "$run/goroutines.txt" "http://$http_addr/debug/pprof/goroutine?debug=1") &
    trace_pid=$!
  fi
fi
# Two seconds before the end of the load, with every meter still connected:
# the memory of the server and the simulator, and the server's metrics.
sleep "$((duration_s - 2))"
sim_end_planned=$(echo "$sim_start + $duration_s" | bc)
uptime_during=$(uptime)
cpu_pressure=$(awk '/^some/ { print $3 }' /proc/pressure/cpu 2>/dev/null || true)
curl -fs "http://$http_addr/metrics" >"$run/metrics-end-of-load.txt" || true
server_rss_loaded=$(rss_kb "$server_pid")
sim_rss_loaded=$(rss_kb "$sim_pid")
connected_loaded=$(metric mf_mqtt_connected_meters)
sleep 2
wait "$sim_pid" || log "firmware-sim exited with status $?"
sim_pid=""
kill "$watchdog_pid" 2>/dev/null || true
watchdog_pid=""
sim_done=$(date +%s.%N)
[ -n "${prof_pid:-}" ] && wait "$prof_pid" 2>/dev/null || true
[ -n "${trace_pid:-}" ] && wait "$trace_pid" 2>/dev/null || true

# ---------- catch up ----------
# A server that went away during the run (crash, or a signal from outside)
# is started again on the same journal: what it acknowledged must come back
# from the journal into the stores, and the check below says whether it did.
if ! kill -0 "$server_pid" 2>/dev/null; then
  server_status=0
  wait "$server_pid" || server_status=$?
  log "the server exited during the run (status $server_status, see server.log): starting it again on the same journal"
  start_server
  server_restarts=1
fi
log "waiting for mf_ingest_lag_records to reach 0"
lag_start=$(date +%s.%N)
lag=$(metric mf_ingest_lag_records)
deadline=$(($(date +%s) + LAG_TIMEOUT))
while [ "${lag:-1}" != 0 ] && [ "$(date +%s)" -lt "$deadline" ]; do
  kill -0 "$server_pid" 2>/dev/null || { log "the server exited while catching up (see server.log)"; break; }
  sleep 1
  lag=$(metric mf_ingest_lag_records)
done
caught_up=$(date +%s.%N)
lag_end=$lag
[ "$lag_end" = 0 ] || log "lag still $lag_end after ${LAG_TIMEOUT}s"
if [ -n "$probe_pid" ]; then wait "$probe_pid" || true; probe_pid=""; fi
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
sample >>"$run/samples.csv" 2>/dev/null
curl -fs "http://$http_addr/metrics" >"$run/metrics-caught-up.txt" || true

if [ "$VERIFY" = 1 ]; then
  log "verifying"
  verify_flags=(check --acked-log "$run/acked.csv" --influx-url "$influx_url" --influx-bucket "$db/autogen" --postgres-url "$pg_url")
  echo "verify ${verify_flags[*]}" >>"$run/commands.txt"
  "$BIN/verify" "${verify_flags[@]}" >"$run/verify.json" 2>"$run/verify.log" || log "verify reported a failure (see verify.json, verify.log)"
fi
if [ -s "$run/cpu.pprof" ]; then
  go tool pprof -top -nodecount=30 "$BIN/meterflow" "$run/cpu.pprof" >"$run/pprof-top.txt" 2>/dev/null || true
  go tool pprof -top -cum -nodecount=40 "$BIN/meterflow" "$run/cpu.pprof" >"$run/pprof-cum.txt" 2>/dev/null || true
fi
if [ -s "$run/trace.out" ]; then
  # where goroutines waited: for a CPU (sched), on locks and channels (sync), in syscalls, on the network
  for kind in sched sync syscall net; do
    go tool trace -pprof="$kind" "$run/trace.out" >"$run/trace-$kind.pprof" 2>/dev/null &&
      go tool pprof -top -cum -nodecount=30 "$BIN/meterflow" "$run/trace-$kind.pprof" >"$run/trace-$kind.txt" 2>/dev/null || true
  done
fi

# ---------- summary ----------
win_start=$(echo "$sim_start + $warmup_s" | bc)
# window: first sample at or after win_start, last at or before the planned end
window=$(awk -F, -v a="$win_start" -v b="$sim_end_planned" -v hz="$clk" '
  NR == 1 { next }
  $1 >= a && !s { s = 1; t0 = $1; m0 = $2; r0 = $3; c0 = $5; sc0 = $12; ic0 = $13; pc0 = $14; mc0 = $15; all0 = $17 }
  $1 >= a && $1 <= b && $4 > maxlag { maxlag = $4 }
  $1 <= b { t1 = $1; m1 = $2; r1 = $3; c1 = $5; sc1 = $12; ic1 = $13; pc1 = $14; mc1 = $15; all1 = $17; lag = $4; pend = $6 }
  { if ($8 > srv) srv = $8; if ($9 > ifx) ifx = $9; if ($10 > pg) pg = $10; if ($11 > sim) sim = $11; if ($7 > conn) conn = $7 }
  END {
    d = t1 - t0; if (d <= 0) d = 1
    printf "{\"window_s\":%.1f,\"accepted_msgs_per_s\":%.0f,\"accepted_readings_per_s\":%.0f,\"stored_msgs_per_s\":%.0f,", d, (m1-m0)/d, (r1-r0)/d, (c1-c0)/d
    printf "\"lag_at_end\":%d,\"lag_max\":%d,\"journal_pending_bytes_at_end\":%d,\"max_connected\":%d,", lag, maxlag, pend, conn
    ours = (sc1-sc0) + (ic1-ic0) + (pc1-pc0) + (mc1-mc0)
    printf "\"cpu_cores\":{\"server\":%.2f,\"influxd\":%.2f,\"postgres\":%.2f,\"firmware_sim\":%.2f,\"machine\":%.2f,\"others\":%.2f},", (sc1-sc0)/hz/d, (ic1-ic0)/hz/d, (pc1-pc0)/hz/d, (mc1-mc0)/hz/d, (all1-all0)/hz/d, (all1-all0-ours)/hz/d
    printf "\"max_rss_mb\":{\"server\":%.0f,\"influxd\":%.0f,\"postgres_pss\":%.0f,\"firmware_sim\":%.0f}}", srv/1024, ifx/1024, pg/1024, sim/1024
  }' "$run/samples.csv")
# mean store write time and batch size over the run, from the server's histograms
sinks=$(awk '
  $1 == "mf_sink_write_seconds_sum{sink=\"influxdb\"}" { is = $2 } $1 == "mf_sink_write_seconds_count{sink=\"influxdb\"}" { ic = $2 }
  $1 == "mf_sink_write_seconds_sum{sink=\"postgres\"}" { ps = $2 } $1 == "mf_sink_write_seconds_count{sink=\"postgres\"}" { pc = $2 }
  $1 == "mf_sink_batch_rows_sum" { bs = $2 } $1 == "mf_sink_batch_rows_count" { bc = $2 }
  $1 ~ /^mf_sink_errors_total/ { err += $2 }
  END { printf "{\"influx_writes\":%d,\"influx_write_ms_mean\":%.1f,\"postgres_writes\":%d,\"postgres_write_ms_mean\":%.1f,\"batch_rows_mean\":%.0f,\"sink_errors\":%d}",
        ic, ic ? 1000*is/ic : 0, pc, pc ? 1000*ps/pc : 0, bc ? bs/bc : 0, err }' "$run/metrics-caught-up.txt" 2>/dev/null || echo null)
per_conn() { if [ "${2:-0}" -gt 0 ]; then echo $((($1) * 1024 / $2)); else echo 0; fi; }
jq -n \
  --arg run "$run_id" --arg uptime_before "$uptime_before" --arg uptime_during "$uptime_during" --arg cpu_pressure "${cpu_pressure:-}" \
  --argjson meters "$METERS" --arg rate "$RATE" --arg duration "$DURATION" --argjson workers "$WORKERS" \
  --arg serve "$(sed -n 1p "$run/commands.txt")" --arg simcmd "$(sed -n '/^firmware-sim/p' "$run/commands.txt")" \
  --argjson provision_s "$provision_s" --argjson server_restarts "$server_restarts" --argjson ncpu "$(nproc)" \
  --argjson window "$window" --argjson sinks "${sinks:-null}" \
  --argjson catch_up_s "$(echo "$caught_up - $sim_done" | bc)" --arg lag_end "$lag_end" \
  --argjson sim "$(cat "$run/sim.json" 2>/dev/null || echo null)" \
  --argjson probe "$(cat "$run/probe.json" 2>/dev/null || echo null)" \
  --argjson verify "$(cat "$run/verify.json" 2>/dev/null || echo null)" \
  --argjson srv_idle "$server_rss_idle" --argjson srv_loaded "$server_rss_loaded" --argjson sim_loaded "$sim_rss_loaded" \
  --argjson connected "${connected_loaded:-0}" \
  --argjson srv_per_conn "$(per_conn "$server_rss_loaded - $server_rss_idle" "${connected_loaded:-0}")" \
  '{run: $run, meters: $meters, rate: $rate, duration: $duration, workers: $workers,
    uptime_before: $uptime_before, uptime_during: $uptime_during, cpu_pressure_at_end: $cpu_pressure, serve: $serve, firmware_sim: $simcmd,
    provision_s: $provision_s, server_restarts: $server_restarts, cpus: $ncpu, window: $window, sinks: $sinks, catch_up_s: $catch_up_s, lag_after_catch_up: $lag_end,
    sim: $sim, probe: $probe, verify: $verify,
    memory: {server_rss_idle_kb: $srv_idle, server_rss_loaded_kb: $srv_loaded, connected: $connected,
             server_bytes_per_connection: $srv_per_conn, sim_rss_kb: $sim_loaded,
             sim_bytes_per_meter_rss: (if $meters > 0 then ($sim_loaded * 1024 / $meters | floor) else 0 end)}}' \
  >"$run/summary.json"

jq -r '
  def f(x): if x == null then "-" elif (x | type) == "number" then (x * 10 | round / 10 | tostring) else (x | tostring) end;
  "",
  "== bench-e2e \(.run) ==",
  (if .server_restarts > 0 then "WARNING       the server exited during the run and was started again on its journal: throughput and latency figures are not valid, the loss check is" else empty end),
  "load          \(.meters) meters, rate \(.rate) msg/s, \(.duration), \(.workers) ingest workers",
  "load average  before: \(.uptime_before | sub(".*load average: "; ""))   end of load: \(.uptime_during | sub(".*load average: "; ""))   CPU pressure \(.cpu_pressure_at_end) (/proc/pressure/cpu)",
  "firmware-sim  acked \(f(.sim.messages_acked)) messages (\(f(.sim.readings_acked)) readings) in \(f(.sim.duration_s|floor)) s: \(f(.sim.msgs_per_s|floor)) msg/s, \(f(.sim.readings_per_s|floor)) readings/s over the whole run; connected \(f(.sim.connected)), failed \(f(.sim.failed)), rejected \(f(.sim.rejected)), pending \(f(.sim.pending))",
  "steady state  \(.window.window_s) s window: accepted \(.window.accepted_msgs_per_s) msg/s = \(.window.accepted_readings_per_s) readings/s; stored \(.window.stored_msgs_per_s) msg/s",
  "lag           max \(.window.lag_max) records in the window, \(.window.lag_at_end) at its end (\(f(if .window.accepted_msgs_per_s > 0 then .window.lag_at_end / .window.accepted_msgs_per_s else null end)) s of load; the checkpoint moves every 2.5-5 s)",
  "store writes  InfluxDB \(f(.sinks.influx_writes)) writes, mean \(f(.sinks.influx_write_ms_mean)) ms; PostgreSQL \(f(.sinks.postgres_writes)) writes, mean \(f(.sinks.postgres_write_ms_mean)) ms; mean batch \(f(.sinks.batch_rows_mean)) rows; errors \(f(.sinks.sink_errors))",
  "catch-up      lag 0 \(f(.catch_up_s)) s after the simulator stopped (lag now \(.lag_after_catch_up))",
  "ack latency   p50 \(f(.sim.ack_latency_ms.p50)) ms, p90 \(f(.sim.ack_latency_ms.p90)) ms, p99 \(f(.sim.ack_latency_ms.p99)) ms, max \(f(.sim.ack_latency_ms.max)) ms",
  "queryable     p50 \(f(.probe.queryable_ms.p50)) ms, p90 \(f(.probe.queryable_ms.p90)) ms, p99 \(f(.probe.queryable_ms.p99)) ms, max \(f(.probe.queryable_ms.max)) ms (n=\(f(.probe.queryable_ms.n)), unseen \(f(.probe.unseen)), poll cycle \(f(.probe.poll_cycle_ms)) ms)",
  "loss          acked \(f(.verify.acked)), found in InfluxDB \(f(.verify.found_influx)), missing \(f(.verify.missing)), extra \(f(.verify.extra)); PostgreSQL intervals missing \(f(.verify.pg_missing_intervals)) (\(f(.verify.pg_interval_rows)) rows); ok=\(f(.verify.ok))",
  "CPU (cores)   server \(.window.cpu_cores.server), influxd \(.window.cpu_cores.influxd), postgres \(.window.cpu_cores.postgres), firmware-sim \(.window.cpu_cores.firmware_sim); whole machine \(.window.cpu_cores.machine) of \(.cpus), other processes \(.window.cpu_cores.others)",
  "memory (MB)   peak RSS server \(.window.max_rss_mb.server), influxd \(.window.max_rss_mb.influxd), postgres (Pss) \(.window.max_rss_mb.postgres_pss), firmware-sim \(.window.max_rss_mb.firmware_sim)",
  "connections   \(.memory.connected) connected: server \(.memory.server_bytes_per_connection) B/connection (RSS with the fleet minus RSS before it; meaningful with many meters), firmware-sim \(.memory.sim_bytes_per_meter_rss) B/meter (RSS), \(f(.sim.memory.bytes_per_meter)) B/meter (Go heap+stacks)"
' "$run/summary.json"
if [ -s "$run/pprof-top.txt" ]; then
  echo "CPU profile of the server (flat, top 15):"
  sed -n '/flat%/,$p' "$run/pprof-top.txt" | head -n 16
fi
[ -s "$run/acked.csv" ] && gzip -f "$run/acked.csv"
echo "files: $run"
