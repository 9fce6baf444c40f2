#!/bin/bash
# dialect-rates.sh BIN [ROUNDS] [SECONDS]: starts BIN serve on a fresh data
# directory (scripts/bench.yaml's project) and loads it with each dialect
# in turn, in ROUNDS (3) alternating rounds of SECONDS (8) after a 2 s
# warm-up, so that every dialect's figures come from the same run: single
# webhook events and track hits at 64 connections, s2s batches, track
# batches and commerce batches of 100 at 16. Then it prints, per dialect,
# the events/s of each round, the stored bytes per event (the canonical
# events in events.db, read with the sqlite3 shell when there is one) and
# the stored bytes per second that makes. docs/benchmarks.md (issue 14's
# goals) shows its figures.
set -u
BIN=$(realpath "$1"); ROUNDS=${2:-3}; D=${3:-8}
DIR=$(mktemp -d /tmp/dialect-rates.XXXXXX)
TOKEN=dialect-rates-admin-token
cp "$(dirname "$0")/bench.yaml" "$DIR/bench.yaml"
SLUICE_ADMIN_TOKEN=$TOKEN "$BIN" serve --config "$DIR/bench.yaml" --data-dir "$DIR/data" --listen 127.0.0.1:41881 --admin-listen 127.0.0.1:41882 > "$DIR/serve.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -sf 127.0.0.1:41882/healthz >/dev/null && break; sleep 0.1; done
curl -sf 127.0.0.1:41882/healthz >/dev/null || { echo "sluice serve did not start:" >&2; tail -5 "$DIR/serve.log" >&2; exit 1; }
LOADS=(webhook track s2s track-batch commerce-batch)
declare -A FLAGS=(
	[webhook]="--dialect webhook -c 64"
	[track]="--dialect track --token bench-key -c 64"
	[s2s]="--dialect s2s --app-id bench-app --token bench-key -c 16"
	[track-batch]="--dialect track-batch --token bench-key -c 16"
	[commerce-batch]="--dialect commerce-batch --token bench-key -c 16"
)
# The key prefix of each load's events in events.db.
declare -A KEYS=([webhook]="in.gen.%" [track]="in.track.%" [s2s]="in.s2s.%" [track-batch]="in.track.%" [commerce-batch]="in.commerce.%")
declare -A RATES SUMS
for r in $(seq "$ROUNDS"); do
	for l in "${LOADS[@]}"; do
		# shellcheck disable=SC2086
		rate=$("$BIN" bench --url http://127.0.0.1:41881 ${FLAGS[$l]} -d "${D}s" --warmup 2s 2>&1 | awk '/events\/s/ {print int($1); exit}')
		RATES[$l]+="${rate:-0} "
		SUMS[$l]=$(( ${SUMS[$l]:-0} + ${rate:-0} ))
		echo "round $r: $l ${rate:-0} events/s"
	done
done
echo "== same run, $ROUNDS rounds of ${D}s each"
for l in "${LOADS[@]}"; do
	mean=$(( SUMS[$l] / ROUNDS ))
	bytes=""
	if command -v sqlite3 >/dev/null; then
		bytes=$(sqlite3 "file:$DIR/data/events.db?mode=ro" "SELECT CAST(avg(length(body)) AS INTEGER) FROM (SELECT body FROM events WHERE key LIKE '${KEYS[$l]}' ORDER BY id DESC LIMIT 20000)" 2>/dev/null)
	fi
	if [ -n "$bytes" ]; then
		printf "%-15s %s events/s (mean %d)  %d bytes stored per event  %.1f MB/s stored\n" "$l" "${RATES[$l]}" "$mean" "$bytes" "$(awk -v m="$mean" -v b="$bytes" 'BEGIN {print m * b / 1e6}')"
	else
		printf "%-15s %s events/s (mean %d)\n" "$l" "${RATES[$l]}" "$mean"
	fi
done
