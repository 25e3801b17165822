#!/usr/bin/env bash
# Starts a Docker daemon for the docker backend's tests, unless one already
# answers. Idempotent. Needs root and Debian's docker.io.
#
# The daemon gets no bridge, no iptables rules and no masquerading: this
# machine forbids traffic to private ranges, so the default bridge network
# would be useless, and the tests run their containers with --network host
# (or none) anyway.
set -euo pipefail

wait_secs=30

if docker info >/dev/null 2>&1; then
  echo "dockerd already answers"
  exit 0
fi
command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install docker.io" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "dockerd must be started as root" >&2; exit 1; }

log=$(mktemp "${TMPDIR:-/tmp}/dockerd.XXXXXX.log")
# setsid: the daemon must outlive this script and the caller's process
# group (a CI step, a terminal).
setsid dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 </dev/null &
pid=$!

fail() {
  echo "$1; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

deadline=$((SECONDS + wait_secs))
until docker info >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || fail "dockerd exited"
  [ "$SECONDS" -lt "$deadline" ] || fail "dockerd (pid $pid) did not answer within ${wait_secs}s"
  sleep 0.5
done
echo "dockerd started (pid $pid, log $log)"
