#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (cmd/meterflow
# browser_test.go) when /usr/bin/chromium is missing. `make test` runs it
# before `go test`. As root it calls apt-get directly, otherwise through sudo.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    log "chromium is missing and installing it needs root (apt-get install chromium)"
    exit 1
  fi
  as_root=(sudo)
fi

log "installing chromium with apt-get (once per machine)"
# The first install on a new machine can fail with "cannot access archive"
# (or find no package at all): refresh the lists and retry once.
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2; then
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
fi
test -x /usr/bin/chromium || { log "apt-get finished but /usr/bin/chromium is still missing"; exit 1; }
