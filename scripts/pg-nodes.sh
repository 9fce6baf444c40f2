#!/bin/bash
# pg-nodes.sh BIN [ROUNDS] [SECONDS]: one sluice node on SQLite against one,
# two and three nodes sharing one PostgreSQL 15, on this machine, in
# alternating rounds of the same run. It starts PostgreSQL from Debian's
# postgresql-15 as the tests do (initdb as the user postgres in a temp dir,
# fsync and synchronous_commit on, shared_buffers 256MB), a database per
# cluster size, the nodes with every store in PostgreSQL, and spreads the
# load over the nodes: one `sluice bench` per node, the connections split
# between them, started together; the figure of a round is their sum. Two
# loads: single webhook events (60 connections in all) and s2s batches of
# 100 messages (18 connections in all: divisible by 1, 2 and 3). Every node shares the machine's
# cores with the others, PostgreSQL and the load tools: the figure is what
# several nodes on one machine take, not what several machines would.
# Then one node against its pgx group-commit floor (`--floor postgres`).
# docs/benchmarks.md ("Several nodes on one PostgreSQL") shows its figures.
set -u
BIN=$(realpath "$1"); ROUNDS=${2:-3}; D=${3:-5}
PGBIN=/usr/lib/postgresql/15/bin
W=$(mktemp -d /tmp/pg-nodes.XXXXXX)
chmod 755 "$W"
PORT=55432
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -m fast stop >/dev/null 2>&1
	rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/pg" && chown postgres "$W/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null || exit 1
cat >> "$W/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$W/pg'
fsync = on
synchronous_commit = on
max_connections = 300
shared_buffers = 256MB
logging_collector = off
log_min_messages = warning
CONF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -l "$W/pg/server.log" -w start >/dev/null || exit 1
DSN() { echo "postgres://postgres@127.0.0.1:$PORT/$1?sslmode=disable"; }
for db in n1 n2 n3; do runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p $PORT "$db"; done
cp "$(dirname "$0")/bench.yaml" "$W/bench.yaml"
# node NAME INDEX PORTBASE [DSN]: starts a node; ingest on PORTBASE+2*INDEX.
node() {
	local dir="$W/$1-$2" ingest=$(($3 + 2 * $2))
	mkdir -p "$dir"
	[ -f "$W/hooks.key-$1" ] && cp "$W/hooks.key-$1" "$dir/hooks.key"
	if [ -n "${4:-}" ]; then
		SLUICE_ADMIN_TOKEN=pg-nodes-admin-token SLUICE_STORAGE=postgres SLUICE_POSTGRES_DSN="$4" "$BIN" serve --config "$W/bench.yaml" --data-dir "$dir" --worker-id $(($2 + 1)) \
			--listen 127.0.0.1:$ingest --admin-listen 127.0.0.1:$((ingest + 1)) > "$dir.log" 2>&1 &
	else
		SLUICE_ADMIN_TOKEN=pg-nodes-admin-token "$BIN" serve --config "$W/bench.yaml" --data-dir "$dir" --listen 127.0.0.1:$ingest --admin-listen 127.0.0.1:$((ingest + 1)) > "$dir.log" 2>&1 &
	fi
	PIDS+=($!)
	for _ in $(seq 300); do curl -sf 127.0.0.1:$((ingest + 1))/healthz >/dev/null && break; sleep 0.1; done
	curl -sf 127.0.0.1:$((ingest + 1))/healthz >/dev/null || { echo "node $1-$2 did not start:" >&2; tail -5 "$dir.log" >&2; exit 1; }
	[ -f "$W/hooks.key-$1" ] || cp "$dir/hooks.key" "$W/hooks.key-$1"
}
node sqlite 0 42000
node pg1 0 42100 "$(DSN n1)"
for i in 0 1; do node pg2 $i 42200 "$(DSN n2)"; done
for i in 0 1 2; do node pg3 $i 42300 "$(DSN n3)"; done
# load PORTBASE NODES CONNS FLAGS...: one bench per node, CONNS split.
load() {
	local base=$1 n=$2 c=$(($3 / $2)); shift 3
	for i in $(seq 0 $((n - 1))); do
		"$BIN" bench --url http://127.0.0.1:$((base + 2 * i)) -c $c -d "${D}s" "$@" > "$W/load.$i" 2>&1 &
	done
	wait
	cat "$W"/load.* | awk '/events\/s/ {s += $1; e += $(NF)} END {printf "%d events/s (errors %d)", s, e}'
	rm -f "$W"/load.*
}
if [ -n "${PROFILE:-}" ]; then
	# PROFILE=FILE: a 10 s CPU profile of the one node on PostgreSQL
	# under the webhook load, instead of the rounds.
	load 42100 1 60 -d 12s > /dev/null &
	LP=$!
	sleep 1
	curl -sS -o "$PROFILE" -w "pprof: %{http_code}\n" -H "Authorization: Bearer pg-nodes-admin-token" "127.0.0.1:42101/debug/pprof/profile?seconds=10"
	wait $LP
	exit 0
fi
for l in webhook s2s; do
	case $l in
	webhook) C=60; FLAGS=() ;;
	s2s) C=18; FLAGS=(--dialect s2s --app-id bench-app --token bench-key) ;;
	esac
	echo "== $l, $C connections in all, ${D}s rounds"
	for r in $(seq "$ROUNDS"); do
		line="round $r:"
		line+=" sqlite×1 $(load 42000 1 $C "${FLAGS[@]}") |"
		line+=" pg×1 $(load 42100 1 $C "${FLAGS[@]}") |"
		line+=" pg×2 $(load 42200 2 $C "${FLAGS[@]}") |"
		line+=" pg×3 $(load 42300 3 $C "${FLAGS[@]}")"
		echo "$line"
	done
done
echo "== one node on PostgreSQL against its pgx group-commit floor, webhook, 64 connections"
"$BIN" bench --url http://127.0.0.1:42100 --floor postgres --floor-dsn "$(DSN n1)" --rounds "$ROUNDS" -c 64 -d "${D}s" --warmup 1s 2>&1 | grep -E "events/s|ratio|^floor|round"
