#!/usr/bin/env bash
# `make run`: the whole system on this machine, in the foreground.
#   1. local PostgreSQL and InfluxDB (deploy/local/stack.sh, instance "dev")
#   2. database migrations and a demo fleet of meters (provisioned once)
#   3. meterflow serve, and firmware-sim driving the demo fleet
# Ctrl-C stops the server and the simulator; `make stack-down` stops the databases.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
export MF_STACK_NAME=dev
state="${MF_LOCAL_DIR:-$repo/.local}/dev"

eval "$(deploy/local/stack.sh up | sed 's/^/export /')"
mkdir -p "$state"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }
http_port=$(pick "${MF_HTTP_PORT:-8080}")
mqtt_port=$(pick "${MF_MQTT_PORT:-1883}")

export MF_HTTP_ADDR="127.0.0.1:$http_port"
export MF_MQTT_ADDR="127.0.0.1:$mqtt_port"
export MF_JOURNAL_DIR="$state/journal"
export MF_INFLUX_BUCKET="meterflow/autogen"

bin/meterflow migrate
fleet="$state/fleet.csv"
if [ ! -s "$fleet" ]; then
  bin/meterflow meters provision-bulk --count "${MF_DEMO_METERS:-30}" --prefix DEMO- --out "$fleet.tmp"
  mv "$fleet.tmp" "$fleet"
fi

# Demo logins (sign-in codes arrive in the sms_dev_inbox table). A demo
# household with accounts comes from `meterflow seed`, once.
export MF_COOKIE_SECURE=false
demo_pw="${MF_DEMO_PASSWORD:-meterflow-demo}"
household_phone="${MF_DEMO_HOUSEHOLD_PHONE:-+447400123456}"
operator_phone="${MF_DEMO_OPERATOR_PHONE:-+447400123457}"
if [ ! -f "$state/seeded" ]; then
  bin/meterflow seed --accounts 1 --interval 1h
  touch "$state/seeded"
fi
household_id=1 # the first seeded household
if command -v psql >/dev/null; then
  household_id=$(psql "$MF_POSTGRES_URL" -Atc 'select min(id) from households')
fi
MF_USER_PASSWORD="$demo_pw" bin/meterflow users create --exist-ok --role household --household "$household_id" --phone "$household_phone"
MF_USER_PASSWORD="$demo_pw" bin/meterflow users create --exist-ok --role operator --phone "$operator_phone"
# The demo household's number is its verified phone, so payment and auto-pay
# codes reach the development inbox (the portal's Messages page).
bin/meterflow phones add --household "$household_id" --phone "$household_phone" >/dev/null

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

bin/meterflow serve >>"$state/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://$MF_HTTP_ADDR/readyz" && break
  sleep 0.2
done
if ! curl -fs -o /dev/null "http://$MF_HTTP_ADDR/readyz"; then
  tail -n 40 "$state/server.log" >&2
  echo "meterflow did not become ready; see $state/server.log" >&2
  exit 1
fi

if [ -x bin/firmware-sim ]; then
  bin/firmware-sim --broker "tcp://$MF_MQTT_ADDR" --credentials "$fleet" --speed "${MF_DEMO_SPEED:-96}" \
    >>"$state/firmware-sim.log" 2>&1 &
  pids+=($!)
fi

cat <<INFO

Meterflow is running.
  Portal      http://$MF_HTTP_ADDR/            (households)
  Dashboard   http://$MF_HTTP_ADDR/operator/   (operators)
  HTTP        http://$MF_HTTP_ADDR   (/healthz, /readyz, /metrics)
  MQTT        tcp://$MF_MQTT_ADDR    (meter credentials: $fleet)
  PostgreSQL  $MF_POSTGRES_URL
  InfluxDB    $MF_INFLUX_URL  (database "meterflow", Flux enabled)
  Demo fleet  $(($(wc -l <"$fleet") - 1)) meters, simulated at ${MF_DEMO_SPEED:-96}x real time
  Logs        $state/server.log, $state/firmware-sim.log
  API         http://$MF_HTTP_ADDR/api/v1  (docs/openapi.yaml)
  Logins      household $household_phone, operator $operator_phone, password $demo_pw
              sign-in codes: bin/meterflow sms inbox --to $household_phone   (MF_POSTGRES_URL as above)
  Sandbox     add a card in the portal with the token tok_sandbox_424242_4242 (4000000000000002 declines: tok_sandbox_400000_0002)

Ctrl-C stops the server and the simulator; 'make stack-down' stops the databases.
INFO
wait "${pids[0]}"
