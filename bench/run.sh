#!/usr/bin/env bash
# Benchmarks of the node agent, each against a peer measured in the same
# run (see bench/README.md). Prints one line per benchmark and a summary.
# Exit status: 0 when every benchmark ran (a missed target is a FAIL in
# the table, not an error), 1 when one could not run; BENCH_STRICT=1 also
# exits 1 on a missed target.
#
#   bash bench/run.sh
#
# Environment: BENCH_CYCLES (start/stop cycles, default 20), BENCH_ROUNDS
# (SSE rounds, default 10), BENCH_WRK_SECONDS (default 10).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/resilience-bench.XXXXXX")
BIN=$WORK/bin
PIDS=$WORK/pids
RESULTS=$WORK/results.tsv
CYCLES=${BENCH_CYCLES:-20}
ROUNDS=${BENCH_ROUNDS:-10}
WRK_SECONDS=${BENCH_WRK_SECONDS:-10}
: >"$PIDS"
: >"$RESULTS"

# Every process the harness started is in $PIDS; the harness kills them
# itself, and they get SIGKILL if it dies (Pdeathsig), so this is a last
# resort. A pid is only signalled if it still runs one of our binaries
# (agents, sample services, peerserver); the `sleep 3600` services die with
# their agent or with the harness.
ours() {
	local cmd
	cmd=$( { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
	[[ $cmd == "$BIN/"* ]]
}
cleanup() {
	local rc=$? pid live=()
	trap - EXIT INT TERM
	if [[ -n ${HARNESS:-} ]] && kill -TERM "$HARNESS" 2>/dev/null; then
		# It stops its agents (and they their services) before it exits.
		for _ in $(seq 200); do
			kill -0 "$HARNESS" 2>/dev/null || break
			sleep 0.1
		done
	fi
	while read -r pid; do
		[[ -n $pid ]] && ours "$pid" && live+=("$pid")
	done <"$PIDS"
	if ((${#live[@]})); then
		kill -TERM "${live[@]}" 2>/dev/null || true
		for _ in $(seq 50); do
			local any=0
			for pid in "${live[@]}"; do ours "$pid" && any=1; done
			((any)) || break
			sleep 0.1
		done
		for pid in "${live[@]}"; do ours "$pid" && kill -KILL "$pid" 2>/dev/null || true; done
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ((${BASH_VERSINFO[0]} < 4)); then echo "bench: bash 4 or later required" >&2; exit 1; fi
if [[ $(nproc) -lt 2 ]]; then echo "bench: 2 CPU cores required (the status benchmark pins server and load apart)" >&2; exit 1; fi
command -v taskset >/dev/null || { echo "bench: taskset (util-linux) required" >&2; exit 1; }

if ! command -v wrk >/dev/null; then
	echo "== installing wrk"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq wrk >/dev/null 2>&1; then
		apt-get update -qq
		apt-get install -y -qq wrk >/dev/null
	fi
fi

echo "== building into $BIN"
mkdir -p "$BIN"
(
	cd "$ROOT"
	go build -o "$BIN/resilience" ./cmd/resilience
	go build -o "$BIN/agentbench" ./bench/agentbench
	go build -o "$BIN/peerserver" ./bench/peerserver
	go build -o "$BIN/trunkbench" ./bench/trunkbench
)

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -1) ]] && rev="$rev+dirty"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== $(date -u +%FT%TZ) commit $rev, $(nproc) cores, $(go version | cut -d' ' -f3), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), load $load_before"

errors=0
HARNESS=
bench() {
	local name=$1
	shift
	echo
	echo "== $name"
	local t0=$SECONDS rc=0
	# In the background and waited for, so that a signal to this script
	# is handled at once (cleanup stops the harness, which stops the rest).
	"$BIN/agentbench" "$name" --bin "$BIN/resilience" --peer-bin "$BIN/peerserver" \
		--dir "$WORK/$name" --results "$RESULTS" --pidfile "$PIDS" "$@" &
	HARNESS=$!
	wait "$HARNESS" || rc=$?
	HARNESS=
	((rc == 0)) || errors=$((errors + 1))
	echo "   ($((SECONDS - t0))s)"
}

started=$SECONDS
bench start --cycles "$CYCLES" --timeout 150s
bench status --duration "${WRK_SECONDS}s" --timeout 90s
bench sse --rounds "$ROUNDS" --subscribers 100 --timeout 90s
bench memory --timeout 60s
bench cc --cycles "$CYCLES" --timeout 120s

echo
echo "== xds_register"
if line=$("$BIN/trunkbench" -mds 20 -rounds "$CYCLES" 2>/dev/null); then
	echo "$line"
	result=FAIL; [[ $line == *PASS ]] && result=PASS
	printf 'xds_register\t%s\t%s\t%s\t%s\t%s\n' "20 MDS in parallel" "one after the other" "$(sed 's/.*| x\([0-9.]*\) .*/x\1/' <<<"$line")" "all within 300ms" "$result" >>"$RESULTS"
else
	echo "trunkbench failed"; errors=$((errors + 1))
fi

echo
echo "== edge_vs_haproxy"
if ! command -v haproxy >/dev/null; then
	echo "== installing haproxy"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq haproxy >/dev/null 2>&1; then
		apt-get update -qq
		apt-get install -y -qq haproxy >/dev/null || true
	fi
fi
if (cd "$ROOT" && go build -o "$BIN/edgebench" ./bench/edgebench) &&
	line=$("$BIN/edgebench" -bin "$BIN/resilience" -duration "${WRK_SECONDS}s" -runs 2 -pidfile "$PIDS"); then
	echo "$line"
	result=FAIL; [[ $line == *PASS ]] && result=PASS
	printf 'edge_vs_haproxy\t%s\t%s\t%s\t%s\t%s\n' \
		"$(sed 's/^edge_vs_haproxy: edge \([0-9]*\) req\/s p99 \([0-9.]*ms\) |.*/\1 req\/s, p99 \2/' <<<"$line")" \
		"$(sed 's/.*| haproxy \([0-9]*\) req\/s p99 \([0-9.]*ms\) |.*/HAProxy \1 req\/s, p99 \2/' <<<"$line")" \
		"$(sed 's/.*| req\/s \(x[0-9.]*\) .*, p99 \(x[0-9.]*\) .*/req\/s \1, p99 \2/' <<<"$line")" \
		"req/s >= x0.8, p99 <= x1.5" "$result" >>"$RESULTS"
else
	echo "edgebench failed"; errors=$((errors + 1))
fi

echo "== edge_websockets"
if [[ -x $BIN/edgebench ]] &&
	line=$("$BIN/edgebench" ws -bin "$BIN/resilience" -n 10000 -pidfile "$PIDS"); then
	echo "$line"
	result=FAIL; [[ $line == *PASS ]] && result=PASS
	printf 'edge_websockets\t%s\t%s\t%s\t%s\t%s\n' \
		"$(sed 's/^edge_websockets: \([0-9]*\) idle WS: edge VmRSS \([0-9.]* MB\) .*closed on switch: max \([0-9]* ms\) .*, left open \([0-9]*\) .*/\1 WS, \2, closed max \3, \4 left open/' <<<"$line")" \
		"$(sed 's/.*| haproxy VmRSS \([0-9.]* MB\) |.*/HAProxy \1/' <<<"$line")" \
		"$(sed 's/.*| \(x[0-9.]*\) |.*/VmRSS \1/' <<<"$line")" \
		"< 200 MB, all closed within 1 s" "$result" >>"$RESULTS"
else
	echo "edgebench ws failed"; errors=$((errors + 1))
fi

echo
echo "== edge_failover"
if [[ -x $BIN/edgebench ]] &&
	line=$("$BIN/edgebench" failover -bin "$BIN/resilience" -pidfile "$PIDS"); then
	echo "$line"
	result=FAIL; [[ $line == *PASS ]] && result=PASS
	# "503 from X, standby from Y, errors E+F" for each proxy (the "all
	# from" figures, what the targets judge).
	fo_re='503 after [^(]*(all from \([^)]*\)), standby after [^(]*(all from \([^)]*\)), errors \([0-9]*\) (+\([0-9]*\) after start)'
	printf 'edge_failover\t%s\t%s\t%s\t%s\t%s\n' \
		"$(sed "s/^edge_failover: edge $fo_re |.*/503 from \1, standby from \2, errors \3+\4/" <<<"$line")" \
		"$(sed "s/.*| haproxy ([^)]*) $fo_re |.*/HAProxy 503 from \1, standby from \2, errors \3+\4/" <<<"$line")" \
		"$(sed "s/.*, errors \([0-9]*\) (+\([0-9]*\) after start) | haproxy .*, errors \([0-9]*\) (+\([0-9]*\) after start) |.*/errors \1+\2 vs \3+\4/" <<<"$line")" \
		"503 within 1 s, standby within 1 s, no errors" "$result" >>"$RESULTS"
else
	echo "edgebench failover failed"; errors=$((errors + 1))
fi

echo
echo "== summary ($((SECONDS - started))s, load before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg))"
{
	printf 'BENCHMARK\tAGENT\tPEER\tAGENT vs PEER\tTARGET\tRESULT\n'
	cat "$RESULTS"
} | column -t -s $'\t'
fails=$(awk -F'\t' '$6 == "FAIL"' "$RESULTS" | wc -l)
passes=$(awk -F'\t' '$6 == "PASS"' "$RESULTS" | wc -l)
echo "targets: $passes met, $fails missed; benchmarks that could not run: $errors"

if ((errors)); then exit 1; fi
if [[ ${BENCH_STRICT:-} == 1 ]] && ((fails)); then exit 1; fi
exit 0
