#!/bin/bash
# profile-lag.sh BIN DIR [SECONDS]: starts BIN serve on a fresh data
# directory DIR, sends s2s batches (100 messages of 1 000 people per
# request, 16 connections) at saturation for SECONDS (30), and prints every
# 5 s the events stored, the events the profile consumer folded and its
# lag (sluice_profiles_lag_seconds), then how long it took to catch up.
# LOAD replaces the load's flags, e.g.
# LOAD="--dialect commerce-batch --token bench-key -c 16".
# docs/benchmarks.md ("Profiles") shows its figures.
set -u
BIN=$1; DIR=$2; D=${3:-30}
TOKEN=profile-lag-admin-token
rm -rf "$DIR"; mkdir -p "$DIR"
cp "$(dirname "$0")/bench.yaml" "$DIR.yaml"
SLUICE_ADMIN_TOKEN=$TOKEN "$BIN" serve --config "$DIR.yaml" --data-dir "$DIR" --listen 127.0.0.1:41871 --admin-listen 127.0.0.1:41872 > "$DIR.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf 127.0.0.1:41872/healthz >/dev/null && break; sleep 0.1; done
M() { curl -s -H "Authorization: Bearer $TOKEN" 127.0.0.1:41872/metrics |
	awk '/^sluice_log_events_stored_total /{s=$2} /^sluice_profiles_events_applied_total /{f=$2} /^sluice_profiles_lag_seconds /{l=$2}
	END {printf "stored %d folded %d lag %.3fs", s, f, l}'; }
"$BIN" bench --url http://127.0.0.1:41871 ${LOAD:---dialect s2s --app-id bench-app --token bench-key -c 16} -d "${D}s" > "$DIR.load" 2>&1 &
BP=$!
for i in $(seq 1 $((D / 5))); do sleep 5; echo "t=$((i * 5))s $(M)"; done
wait $BP; grep 'events/s' "$DIR.load"
t0=$(date +%s%N)
until M | grep -q 'lag 0.000s'; do sleep 0.1; done
echo "caught up $(( ($(date +%s%N) - t0) / 1000000 )) ms after the load: $(M)"
