#!/usr/bin/env bash
# benches/callgrind-replication.sh - pgproxy's user-space instructions per TPC-B transaction
# through a replicated shard, counted by valgrind's callgrind: the load-independent figure to
# compare across commits when changing the replication path (benches/callgrind.sh does the
# same for the relay; benches/replication.sh measures TPS beside pgpool-II).
#
#   NODES=2 COMMIT=2pc benches/callgrind-replication.sh
#
# Starts ../shared/bench's node1..nodeN (pgcluster.sh, max_prepared_transactions = 100),
# loads pgbench's tables (scale 1) on each node directly (identical data), runs pgproxy
# (release build, transaction pooling, worker_threads = 1, one shard of the N nodes,
# replication.commit = $COMMIT) under callgrind, and after a 5 s warm-up counts
# `pgbench -n -M simple -c 4 -j 1 -T $DURATION` (the TPC-B-like script). Prints instructions
# per transaction, the top inclusive functions of pgproxy's own code, and `pgproxy verify`
# (the nodes must still be identical).
#
# Env: DURATION=20 NODES=2 COMMIT=2pc (or ordered) OUT=/tmp/pgproxy-callgrind-repl
#      PGPROXY_CG_PORT=7557
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"

DURATION=${DURATION:-20}
NODES=${NODES:-2}
COMMIT=${COMMIT:-2pc}
OUT=${OUT:-/tmp/pgproxy-callgrind-repl}
PX_PORT=${PGPROXY_CG_PORT:-7557}
SHARED=${SHARED_BENCH:-$PGPROXY_ROOT/../shared/bench}
command -v valgrind >/dev/null || apt_install valgrind
ensure_postgres
bash "$SHARED/pgcluster.sh" start "$NODES" >/dev/null
PORTS=()
for k in $(seq 1 "$NODES"); do PORTS+=($((55432 + k))); done

psql_node() { run_as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$1" -U postgres -d bench -Atc "$2"; }
restart=0
for port in "${PORTS[@]}"; do
  if [ "$(psql_node "$port" "show max_prepared_transactions")" = 0 ]; then
    psql_node "$port" "ALTER SYSTEM SET max_prepared_transactions = 100" >/dev/null
    restart=1
  fi
done
[ "$restart" = 1 ] && bash "$SHARED/pgcluster.sh" restart "$NODES" >/dev/null
for port in "${PORTS[@]}"; do
  psql_node "$port" "SELECT count(*) FROM (SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'bench' AND pid <> pg_backend_pid()) t" >/dev/null
  for gid in $(psql_node "$port" "SELECT gid FROM pg_prepared_xacts WHERE database = 'bench'"); do
    psql_node "$port" "ROLLBACK PREPARED '$gid'" >/dev/null
  done
  run_as_pg "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -q -s 1 bench >/dev/null 2>&1 \
    || die "pgbench -i on node port $port failed"
done

rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
(cd "$PGPROXY_ROOT" && cargo build --release -q)
bench_pgproxy_config "$OUT" "$PX_PORT" "$(IFS=,; echo "${PORTS[*]}")" 20000 "$COMMIT"

valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$OUT/pgproxy.cg" "$PGPROXY_ROOT/target/release/pgproxy" \
  --config "$OUT/pgproxy.toml" >"$OUT/pgproxy.log" 2>&1 &
PX=$!
for _ in $(seq 1 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PX_PORT" && break; sleep 0.3; done
pgbench -h 127.0.0.1 -p "$PX_PORT" -U postgres -n -M simple -c 4 -j 1 -T 5 bench >/dev/null 2>&1 || true
callgrind_control -z >/dev/null 2>&1
tx=$(pgbench -h 127.0.0.1 -p "$PX_PORT" -U postgres -n -M simple -c 4 -j 1 -T "$DURATION" bench 2>&1 \
  | awk '/actually processed/ {print $NF}')
callgrind_control -d >/dev/null 2>&1
sleep 1
kill -INT "$PX" 2>/dev/null || true
wait "$PX" 2>/dev/null || true
f=$(ls -t "$OUT"/pgproxy.cg.* | head -1)
total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
[ -n "$tx" ] && [ "$tx" -gt 0 ] || die "pgbench processed no transaction (log: $OUT/pgproxy.log)"
echo "== pgproxy: inclusive instructions per transaction of its own functions"
callgrind_annotate --inclusive=yes "$f" 2>/dev/null \
  | grep -E "$PGPROXY_ROOT/src/" | grep -v '([0-9,]*x)' | head -40 \
  | awk -v n="$tx" '{gsub(",", "", $1); printf "%8.0f  %s\n", $1 / n, $NF}' || true
printf 'pgproxy, %s nodes, commit %s: %s TPC-B transactions, %s instructions, %d per transaction\n' \
  "$NODES" "$COMMIT" "$tx" "$total" "$((total / tx))"
"$PGPROXY_ROOT/target/release/pgproxy" verify --config "$OUT/pgproxy.toml" 2>&1 | tail -3
