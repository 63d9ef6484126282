#!/usr/bin/env bash
# benches/replication.sh - synchronous replication cost: pgbench TPC-B through pgproxy with 1, 2
# and 3 nodes per shard, beside pgpool-II in native replication mode on the same 2 nodes, and
# the direct-to-PostgreSQL and PgBouncer baselines, in ONE interleaved run.
#
#   benches/replication.sh [extra TARGET...]     (TARGET as in ../shared/bench/peers.sh)
#
# Targets (../shared/bench nodes node1..node3 = 127.0.0.1:55433..55435, db bench):
#   direct          node1 directly (the ratio baseline)
#   pgbouncer-tx    PgBouncer transaction pool on node1 (no replication: the pooling reference)
#   pgproxy-1       pgproxy, shard of node1                      127.0.0.1:7441
#   pgproxy-2       pgproxy, shard of node1+node2 (2PC commit)   127.0.0.1:7442
#   pgproxy-3       pgproxy, shard of node1..node3               127.0.0.1:7443
#   pgproxy-2o      pgproxy, node1+node2, commit = "ordered"     127.0.0.1:7444
#                   (the same commit guarantee as pgpool-II's native replication)
#   pgpool-repl     pgpool-II native_replication on node1+node2  127.0.0.1:9998 (if pgpool2 is installed)
# Every node gets max_prepared_transactions = 100 (two-phase commit needs it; restarts a node
# once if it was 0). peers.sh initialises pgbench data on every node directly and, before every
# TPC-B run, vacuums and truncates history on every node, so each target starts alike.
#
# Prints TPS, latency, proxy CPU µs per transaction, and the ratios the replication issue asks
# for: pgproxy-2 / pgpool-repl and pgproxy-2 / pgproxy-1.
#
# Env (defaults): DURATION=15 REPEATS=2 TPCB_CLIENTS=16 TPCB_MODES=simple SCALE=10
#   OUT=/tmp/pgbench-results/replication-<timestamp>  KEEP=0  PGPOOL=1 (0 = leave pgpool out)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"

SHARED=${SHARED_BENCH:-$PGPROXY_ROOT/../shared/bench}
[ -f "$SHARED/peers.sh" ] || die "shared benchmark scripts not found in $SHARED (set SHARED_BENCH)"
SHARED=$(cd "$SHARED" && pwd)
KEEP=${KEEP:-0}
USE_PGPOOL=${PGPOOL:-1}
DIR=${PGPROXY_BENCH_DIR:-/tmp/pgproxy-bench-repl}
export OUT=${OUT:-/tmp/pgbench-results/replication-$(date +%Y%m%d-%H%M%S)}
export SCENARIOS=tpcb
export TPCB_CLIENTS=${TPCB_CLIENTS:-16}
export TPCB_MODES=${TPCB_MODES:-simple}
export BACKENDS="127.0.0.1:55433 127.0.0.1:55434 127.0.0.1:55435"
export PGUSER=postgres PGPASSWORD=postgres

ensure_postgres
export PGBIN=$PG_BIN
ensure_pgbouncer
command -v python3 >/dev/null || apt_install python3
if [ "$USE_PGPOOL" = 1 ] && ! command -v pgpool >/dev/null; then
  apt_install pgpool2 || { warn "pgpool2 could not be installed; running without it"; USE_PGPOOL=0; }
fi

ensure_rust
log "cargo build --release"
(cd "$PGPROXY_ROOT" && cargo build --release --bin pgproxy) || die "cargo build --release failed"
BIN=$(cargo_target_dir)/release/pgproxy

cleanup() {
  if [ "$KEEP" = 1 ]; then log "KEEP=1: leaving everything running"; return 0; fi
  for n in 1 2 3 2o; do pgproxy_stop "$DIR/p$n" >/dev/null 2>&1 || true; done
  bash "$SHARED/proxies.sh" stop >/dev/null 2>&1 || true
  bash "$SHARED/pgcluster.sh" stop 3 >/dev/null 2>&1 || true
}
trap cleanup EXIT

bash "$SHARED/pgcluster.sh" start 3
restart=0
for port in 55433 55434 55435; do
  v=$(run_as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d bench -Atc "show max_prepared_transactions")
  if [ "$v" = 0 ]; then
    run_as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d bench -Atc "ALTER SYSTEM SET max_prepared_transactions = 100" >/dev/null
    restart=1
  fi
done
[ "$restart" = 1 ] && bash "$SHARED/pgcluster.sh" restart 3
bash "$SHARED/proxies.sh" start pgbouncer
[ "$USE_PGPOOL" = 1 ] && bash "$SHARED/proxies.sh" start pgpool-repl

bench_pgproxy_up "$BIN" "$DIR/p1" 7441 55433
bench_pgproxy_up "$BIN" "$DIR/p2" 7442 55433,55434
bench_pgproxy_up "$BIN" "$DIR/p3" 7443 55433,55434,55435
bench_pgproxy_up "$BIN" "$DIR/p2o" 7444 55433,55434 20000 ordered

TARGETS=("direct=127.0.0.1:55433/bench" "pgbouncer-tx=127.0.0.1:6432/bench_tx:noprepared"
  "pgproxy-1=127.0.0.1:7441/bench" "pgproxy-2=127.0.0.1:7442/bench" "pgproxy-3=127.0.0.1:7443/bench"
  "pgproxy-2o=127.0.0.1:7444/bench")
[ "$USE_PGPOOL" = 1 ] && TARGETS+=("pgpool-repl=127.0.0.1:9998/bench")
TARGETS+=("$@")

log "peers.sh ${TARGETS[*]}  (OUT=$OUT)"
rc=0
bash "$SHARED/peers.sh" "${TARGETS[@]}" || rc=$?
[ -f "$OUT/results.csv" ] || die "peers.sh produced no $OUT/results.csv"

python3 - "$OUT/results.csv" <<'PY' | tee "$OUT/replication.md"
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None
by = {}
for r in rows:
    by.setdefault(r["target"], []).append(r)
def med(t, k):
    v = [num(r[k]) for r in by.get(t, []) if num(r[k]) is not None]
    return st.median(v) if v else None
def us(t):
    rs = by.get(t, [])
    tx = sum(num(r["tx"]) or 0 for r in rs)
    px = sum(num(r["cpu_proxy_s"]) or 0 for r in rs)
    return px / tx * 1e6 if tx else None
def fails(t):
    return sum(int(num(r["failed"]) or 0) for r in by.get(t, []))
print("| target | TPS (median) | latency ms | proxy CPU µs/tx | failed tx |")
print("|---|---:|---:|---:|---:|")
for t in by:
    tps, lat, u = med(t, "tps"), med(t, "lat_ms"), us(t)
    print(f"| {t} | {tps or 0:.0f} | {lat or 0:.2f} | {u or 0:.0f} | {fails(t)} |")
def ratio(a, b):
    x, y = med(a, "tps"), med(b, "tps")
    return f"{x / y:.2f}" if x and y else "-"
print()
print(f"pgproxy-2 / pgpool-repl TPS: {ratio('pgproxy-2', 'pgpool-repl')}  (target >= 1.5)")
print(f"pgproxy-2 / pgproxy-1 TPS:   {ratio('pgproxy-2', 'pgproxy-1')}  (target >= 0.6)")
print(f"pgproxy-2o / pgpool-repl TPS: {ratio('pgproxy-2o', 'pgpool-repl')}  (ordered commit, as pgpool-II)")
print(f"pgproxy-2o / pgproxy-1 TPS:  {ratio('pgproxy-2o', 'pgproxy-1')}")
print(f"pgproxy-3 / pgproxy-1 TPS:   {ratio('pgproxy-3', 'pgproxy-1')}")
print(f"pgproxy-1 / direct TPS:      {ratio('pgproxy-1', 'direct')}")
PY

# A node detached during the run makes that target's figures those of fewer nodes.
for n in 1 2 3 2o; do
  changed=$(bench_nodes_changed "$DIR/p$n")
  if [ -n "$changed" ]; then
    echo "WARNING: pgproxy-$n detached a node during the run; its figures are not for all its nodes:" |
      tee -a "$OUT/replication.md"
    echo "$changed" | head -5 | tee -a "$OUT/replication.md"
    rc=1
  fi
done
exit $rc
