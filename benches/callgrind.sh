#!/usr/bin/env bash
# benches/callgrind.sh - user-space instructions per select-only transaction, pgproxy beside
# PgBouncer, counted by valgrind's callgrind. Instruction counts do not depend on what else
# the machine is doing (unlike TPS or CPU time on this shared 2-core box), so this is the
# figure to compare across commits when changing the relay's hot path.
#
#   benches/callgrind.sh
#
# Runs pgproxy (this repo's release build, transaction pooling, worker_threads = 1) and
# PgBouncer 1.18 (transaction pool; session pool for MODE=prepared), each under `valgrind --tool=callgrind`, in front of
# ../shared/bench's node1 (started if needed: pgcluster.sh start 1). For each: a 5 s warm-up,
# counters zeroed, `pgbench -n -S -M "$MODE" -c 4 -j 1 -T $DURATION`, counters dumped; prints
# instructions per transaction and the top inclusive functions of pgproxy's session task.
# Under valgrind the proxy is the bottleneck, so fewer transactions per epoll wake-up than in
# a real run: compare figures from this script with each other only.
#
# Env: DURATION=20  MODE=simple (pgbench -M) OUT=/tmp/pgproxy-callgrind  PGPROXY_CG_PORT=7555  PGBOUNCER_CG_PORT=7556
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"

DURATION=${DURATION:-20}
MODE=${MODE:-simple}
OUT=${OUT:-/tmp/pgproxy-callgrind}
PX_PORT=${PGPROXY_CG_PORT:-7555}
PB_PORT=${PGBOUNCER_CG_PORT:-7556}
SHARED=${SHARED_BENCH:-$PGPROXY_ROOT/../shared/bench}
command -v valgrind >/dev/null || apt_install valgrind
command -v pgbouncer >/dev/null || apt_install pgbouncer
ensure_postgres
bash "$SHARED/pgcluster.sh" start 1 >/dev/null
NODE_PORT=55433
rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
(cd "$PGPROXY_ROOT" && cargo build --release -q)

bench_pgproxy_config "$OUT" "$PX_PORT" "$NODE_PORT"
# PgBouncer 1.18 keeps no prepared statements in transaction mode: -M prepared is compared
# with its session mode, as in benches/pgbench.sh.
PB_POOL_MODE=transaction
[ "$MODE" = prepared ] && PB_POOL_MODE=session
cat >"$OUT/pgbouncer.ini" <<EOT
[databases]
bench = host=127.0.0.1 port=$NODE_PORT dbname=bench pool_size=20
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PB_PORT
auth_type = trust
auth_file = $OUT/users.txt
pool_mode = $PB_POOL_MODE
max_client_conn = 2000
logfile = $OUT/pgbouncer.log
pidfile = $OUT/pgbouncer.pid
EOT
echo '"postgres" ""' >"$OUT/users.txt"
chmod 666 "$OUT"/*

# measure NAME PORT RUN_AS : valgrind'd proxy already listening on PORT; prints instr/tx
measure() {
  local name=$1 port=$2 as=$3
  for _ in $(seq 1 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.3; done
  pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S -M "$MODE" -c 4 -j 1 -T 5 bench >/dev/null 2>&1 || true
  $as callgrind_control -z >/dev/null 2>&1
  local tx
  tx=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S -M "$MODE" -c 4 -j 1 -T "$DURATION" bench 2>&1 \
    | awk '/actually processed/ {print $NF}')
  $as callgrind_control -d >/dev/null 2>&1
  sleep 1
  local f total
  f=$(ls -t "$OUT/$name".cg.* | grep -v '\.cg$' | head -1)
  total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '%-10s %9s transactions  %12s instructions  %7d per transaction\n' \
    "$name" "$tx" "$total" "$((total / tx))" | tee -a "$OUT/summary.txt"
  echo "$f"
}

valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$OUT/pgproxy.cg" "$PGPROXY_ROOT/target/release/pgproxy" \
  --config "$OUT/pgproxy.toml" >"$OUT/pgproxy.log" 2>&1 &
PX=$!
px_file=$(measure pgproxy "$PX_PORT" "" | tail -1)
kill -INT "$PX" 2>/dev/null || true
wait "$PX" 2>/dev/null || true

run_as_pg valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$OUT/pgbouncer.cg" /usr/sbin/pgbouncer "$OUT/pgbouncer.ini" \
  >"$OUT/pgbouncer-valgrind.log" 2>&1 &
measure pgbouncer "$PB_PORT" "run_as_pg" >/dev/null
kill "$(cat "$OUT/pgbouncer.pid" 2>/dev/null)" 2>/dev/null || pkill -f "pgbouncer $OUT/pgbouncer.ini" || true

echo "== pgproxy: inclusive instructions per transaction of its own functions"
tx=$(awk '/^pgproxy/ {print $2}' "$OUT/summary.txt")
callgrind_annotate --inclusive=yes "$px_file" 2>/dev/null \
  | grep -E "$PGPROXY_ROOT/src/" | grep -v '([0-9,]*x)' | head -30 \
  | awk -v n="$tx" '{gsub(",", "", $1); printf "%8.0f  %s\n", $1 / n, $NF}' | head -30 || true
cat "$OUT/summary.txt"
