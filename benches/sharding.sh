#!/usr/bin/env bash
# benches/sharding.sh - cost of sharding: a pgbench read-only script keyed by a sharded id
# (pgbench -S's statement with its own random key) through PostgreSQL directly, PgBouncer,
# pgproxy with one shard and pgproxy with two shards, in ONE interleaved run
# (mode -> repetition -> target).
#
#   benches/sharding.sh
#
# The script every target runs (-M prepared and -M simple, -s SCALE sets :scale):
#   \set uid random(1, 100000 * :scale)
#   SELECT abalance FROM pgbench_accounts WHERE aid = :uid;
#
# Targets (../shared/bench nodes: node1..node3 = 127.0.0.1:55433..55435):
#   direct          node1, db bench (full pgbench data; the ratio baseline)
#   pgbouncer       PgBouncer on node1, 127.0.0.1:6432: db bench_tx (transaction pool 20) for
#                   -M simple; db bench_session (session pool) for -M prepared, which PgBouncer
#                   < 1.21 cannot run in transaction mode
#   pgproxy-1shard  pgproxy, one shard = node1 db bench                    127.0.0.1:7451
#   pgproxy-2shards pgproxy, shards s0 = node2, s1 = node3, db bench_sharded 127.0.0.1:7452
#                   [sharding] pgbench_accounts by aid, key_type bigint, hash
# Both pgproxys: transaction pooling, pool 20 per node (as PgBouncer's bench_tx), the same
# [sharding] section; with one shard pgproxy does not route (the plain relay path).
#
# The 2-shard data: node2 and node3 each get their own database bench_sharded (db bench, used
# by the other benches, is left alone) with full pgbench data, then lose the pgbench_accounts
# rows they do not own, placed by PostgreSQL's own hash partitioning (pgproxy's placement:
# modulus = number of shards, remainder = shard index):
#   DELETE FROM pgbench_accounts
#    WHERE NOT satisfies_hash_partition('shard_probe'::regclass, 2, <shard>, aid::bigint)
# where shard_probe is an empty table PARTITION BY HASH on a bigint. A table
# sharding_bench_meta records what was loaded, so the next run reuses it. Before the runs, the
# script checks through pgproxy-2shards that sample keys find their row and that a keyless
# count (merged over both shards) sees every row.
#
# Prints TPS, latency and proxy CPU µs per transaction per target and mode (medians over the
# repetitions) and the ratios pgproxy-2shards/pgproxy-1shard, pgproxy-1shard/direct and
# pgproxy/PgBouncer. Exits non-zero if a pgbench run failed (its errors are printed).
#
# Env (defaults): DURATION=15 REPEATS=2 CLIENTS=16 MODES="prepared simple" SCALE=10 JOBS=2
#   WARMUP=3 (s per target, not recorded; 0 = none) REINIT=0 (1 = reload the pgbench data)
#   OUT=/tmp/pgbench-results/sharding-<timestamp>  (results.csv, logs/, sharding.md)
#   PGPROXY_BENCH_DIR=/tmp/pgproxy-bench-shard (configs, logs, pids)  KEEP=0 (1 = leave the
#   nodes, PgBouncer and both pgproxys running)  SHARED_BENCH=<repo>/../shared/bench
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"

SHARED=${SHARED_BENCH:-$PGPROXY_ROOT/../shared/bench}
[ -f "$SHARED/pgcluster.sh" ] && [ -f "$SHARED/proxies.sh" ] && [ -f "$SHARED/proctree.py" ] \
  || die "shared benchmark scripts not found in $SHARED (set SHARED_BENCH)"
SHARED=$(cd "$SHARED" && pwd)

DURATION=${DURATION:-15}
REPEATS=${REPEATS:-2}
CLIENTS=${CLIENTS:-16}
MODES=${MODES:-prepared simple}
SCALE=${SCALE:-10}
JOBS=${JOBS:-2}
WARMUP=${WARMUP:-3}
REINIT=${REINIT:-0}
KEEP=${KEEP:-0}
DIR=${PGPROXY_BENCH_DIR:-/tmp/pgproxy-bench-shard}
OUT=${OUT:-/tmp/pgbench-results/sharding-$(date +%Y%m%d-%H%M%S)}
P1_PORT=7451
P2_PORT=7452
PGB_PORT=6432
NODE1=55433
SHARD_PORTS=(55434 55435)     # shard index = position (s0, s1)
SHARD_DB=bench_sharded
export PGUSER=postgres PGPASSWORD=postgres

ensure_postgres
export PGBIN=$PG_BIN
ensure_pgbouncer
command -v python3 >/dev/null || apt_install python3
ensure_rust
log "cargo build --release"
(cd "$PGPROXY_ROOT" && cargo build --release --bin pgproxy) || die "cargo build --release failed"
BIN=$(cargo_target_dir)/release/pgproxy
mkdir -p "$OUT/logs" "$DIR"

# ------------------------------------------------------------------ servers
nodes_were_running=0
[ "$(bash "$SHARED/pgcluster.sh" status 3 | grep -c ': running')" = 3 ] && nodes_were_running=1
pgb_was_running=0
bash "$SHARED/proxies.sh" status | grep -q '^pgbouncer: running' && pgb_was_running=1
if [ "$pgb_was_running" = 0 ] && port_in_use "$PGB_PORT"; then
  die "port $PGB_PORT (PgBouncer's in the shared bench) is taken by another program (scripts/demo?)"
fi

cleanup() {
  if [ "$KEEP" = 1 ]; then log "KEEP=1: leaving the nodes, PgBouncer and pgproxy running"; return 0; fi
  pgproxy_stop "$DIR/p1" >/dev/null 2>&1 || true
  pgproxy_stop "$DIR/p2" >/dev/null 2>&1 || true
  [ "$pgb_was_running" = 1 ] || bash "$SHARED/proxies.sh" stop pgbouncer >/dev/null 2>&1 || true
  [ "$nodes_were_running" = 1 ] || bash "$SHARED/pgcluster.sh" stop 3 >/dev/null 2>&1 || true
  return 0
}
trap cleanup EXIT

bash "$SHARED/pgcluster.sh" start 3
bash "$SHARED/proxies.sh" start pgbouncer

# psql_at PORT DB SQL : one statement, unaligned output, stop on error.
psql_at() {
  PGOPTIONS='-c client_min_messages=warning' "$PG_BIN/psql" -h 127.0.0.1 -p "$1" -U postgres -d "$2" -Atq -v ON_ERROR_STOP=1 -c "$3"
}

# ------------------------------------------------------------------ data
rows=$((100000 * SCALE))
n=$(psql_at "$NODE1" bench "select count(*) from pgbench_branches" 2>/dev/null || echo 0)
if [ "$REINIT" = 1 ] || [ "$n" != "$SCALE" ]; then
  log "node1: pgbench -i -s $SCALE (db bench)"
  "$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$NODE1" -U postgres bench \
    >"$OUT/logs/init-$NODE1.log" 2>&1 || { cat "$OUT/logs/init-$NODE1.log"; die "pgbench -i on node1 failed"; }
fi
[ "$(psql_at "$NODE1" bench "select count(*) from pgbench_accounts")" = "$rows" ] \
  || die "node1 db bench lacks pgbench_accounts rows (REINIT=1 reloads it)"
psql_at "$NODE1" bench "vacuum analyze pgbench_accounts" >/dev/null

# load_shard INDEX PORT : full pgbench data in $SHARD_DB, then only the rows the shard owns.
load_shard() {
  local i=$1 port=$2 nshards=${#SHARD_PORTS[@]} want have
  want="$i/$nshards/$SCALE"
  if [ -z "$(psql_at "$port" postgres "select 1 from pg_database where datname = '$SHARD_DB'")" ]; then
    psql_at "$port" postgres "create database $SHARD_DB" >/dev/null
  fi
  have=$(psql_at "$port" "$SHARD_DB" "select shard || '/' || shards || '/' || scale from sharding_bench_meta" 2>/dev/null || true)
  if [ "$REINIT" != 1 ] && [ "$have" = "$want" ]; then
    log "shard s$i (127.0.0.1:$port/$SHARD_DB): data already loaded (REINIT=1 to redo)"
  else
    log "shard s$i (127.0.0.1:$port/$SHARD_DB): pgbench -i -s $SCALE, then keep the rows of remainder $i of $nshards"
    psql_at "$port" "$SHARD_DB" "drop table if exists sharding_bench_meta" >/dev/null
    "$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$port" -U postgres "$SHARD_DB" \
      >"$OUT/logs/init-$port.log" 2>&1 || { cat "$OUT/logs/init-$port.log"; die "pgbench -i on $port failed"; }
    psql_at "$port" "$SHARD_DB" "create table if not exists shard_probe (k bigint) partition by hash (k)" >/dev/null
    psql_at "$port" "$SHARD_DB" "delete from pgbench_accounts where not satisfies_hash_partition('shard_probe'::regclass, $nshards, $i, aid::bigint)" >/dev/null
    psql_at "$port" "$SHARD_DB" "create table sharding_bench_meta as select $i as shard, $nshards as shards, $SCALE as scale" >/dev/null
    psql_at "$port" "$SHARD_DB" "vacuum analyze" >/dev/null
    psql_at "$port" "$SHARD_DB" "checkpoint" >/dev/null
  fi
}
total=0
for i in "${!SHARD_PORTS[@]}"; do
  load_shard "$i" "${SHARD_PORTS[$i]}"
  c=$(psql_at "${SHARD_PORTS[$i]}" "$SHARD_DB" "select count(*) from pgbench_accounts")
  log "shard s$i holds $c of $rows pgbench_accounts rows"
  total=$((total + c))
done
[ "$total" = "$rows" ] || die "the shards hold $total pgbench_accounts rows together, not $rows (REINIT=1 reloads)"

# ------------------------------------------------------------------ pgproxy
# pgproxy_config PORT DB DECISION_LOG NODE_PORT... : pgproxy.toml on stdout, one shard per node.
pgproxy_config() {
  local port=$1 db=$2 dlog=$3 i=0 np
  shift 3
  cat <<EOT
# generated by benches/sharding.sh
[general]
listen = "127.0.0.1:$port"
pool_mode = "transaction"
default_pool_size = 20          # as PgBouncer's bench_tx pool
max_client_conn = 2000
idle_timeout_ms = 10000         # as the peers: idle server connections close after ~10 s
auth_method = "trust"

[[users]]
name = "postgres"
password = "postgres"
auth_method = "trust"

[[databases]]
name = "$db"

[replication]
decision_log = "$dlog"

[sharding]
key_type = "bigint"
function = "hash"

[[sharding.tables]]
name = "pgbench_accounts"
column = "aid"
EOT
  for np in "$@"; do
    printf '\n[[shards]]\nname = "s%s"\n\n[[shards.nodes]]\nhost = "127.0.0.1"\nport = %s\n' "$i" "$np"
    i=$((i + 1))
  done
}

# pgproxy_up NAME PORT DB NODE_PORT... : (re)starts pgproxy with a config in $DIR/NAME.
pgproxy_up() {
  local name=$1 port=$2 db=$3 d=$DIR/$1
  shift 3
  mkdir -p "$d"
  pgproxy_stop "$d" >/dev/null
  pgproxy_config "$port" "$db" "$d/decisions.log" "$@" >"$d/pgproxy.toml"
  RUST_LOG=${RUST_LOG:-warn} pgproxy_start "$BIN" "$d/pgproxy.toml" "$d" "$port" postgres "$db"
  log "pgproxy $name: pid $(pgproxy_pid "$d") on 127.0.0.1:$port (config $d/pgproxy.toml, log $d/pgproxy.log)"
}
pgproxy_up p1 "$P1_PORT" bench "$NODE1"
pgproxy_up p2 "$P2_PORT" "$SHARD_DB" "${SHARD_PORTS[@]}"

# Routing check through pgproxy-2shards: each sample key finds its one row (a wrong shard
# would find none), and the keyless count, merged over the shards, sees every row.
log "checking the 2-shard placement through pgproxy"
shuf -i "1-$rows" -n 200 | sed 's/.*/SELECT count(*) FROM pgbench_accounts WHERE aid = &;/' >"$DIR/check.sql"
found=$("$PG_BIN/psql" -h 127.0.0.1 -p "$P2_PORT" -U postgres -d "$SHARD_DB" -Atq -v ON_ERROR_STOP=1 \
  -f "$DIR/check.sql" 2>&1) || die "routing check through pgproxy-2shards failed: $found"
[ "$(grep -cx 1 <<<"$found")" = 200 ] \
  || die "routing check: $(grep -cvx 1 <<<"$found") of 200 keys did not find exactly one row through pgproxy-2shards"
merged=$("$PG_BIN/psql" -h 127.0.0.1 -p "$P2_PORT" -U postgres -d "$SHARD_DB" -Atq -v ON_ERROR_STOP=1 \
  -c "SELECT count(*) FROM pgbench_accounts" 2>&1) \
  || die "keyless count through pgproxy-2shards failed: $merged"
[ "$merged" = "$rows" ] || die "keyless count through pgproxy-2shards: $merged, not $rows"

# ------------------------------------------------------------------ runs
cat >"$DIR/select.sql" <<'EOT'
\set uid random(1, 100000 * :scale)
SELECT abalance FROM pgbench_accounts WHERE aid = :uid;
EOT

# target NAME MODE -> "port db proxy_port" (proxy_port empty for direct)
target() {
  case $1 in
    direct) echo "$NODE1 bench -" ;;
    pgbouncer) if [ "$2" = prepared ]; then echo "$PGB_PORT bench_session $PGB_PORT"
               else echo "$PGB_PORT bench_tx $PGB_PORT"; fi ;;
    pgproxy-1shard) echo "$P1_PORT bench $P1_PORT" ;;
    pgproxy-2shards) echo "$P2_PORT $SHARD_DB $P2_PORT" ;;
  esac
}
TARGETS=(direct pgbouncer pgproxy-1shard pgproxy-2shards)
proxy_cpu() { # PORT -> CPU seconds of the process tree listening there (0 for none)
  if [ "$1" = - ]; then echo 0; else python3 "$SHARED/proctree.py" cpu "$1" | awk '{print $2}'; fi
}

CSV=$OUT/results.csv
echo "mode,clients,target,rep,tps,lat_ms,failed,rc,tx,cpu_proxy_s" >"$CSV"
j=$((CLIENTS < JOBS ? CLIENTS : JOBS))
bad=0

# run_one TARGET MODE REP DURATION LOG : one pgbench run; REP 0 = warm-up, not recorded.
run_one() {
  local name=$1 mode=$2 rep=$3 dur=$4 log=$5 port db pp c0 c1 rc=0
  read -r port db pp < <(target "$name" "$mode")
  sleep 1
  c0=$(proxy_cpu "$pp")
  "$PG_BIN/pgbench" -n -f "$DIR/select.sql" -s "$SCALE" -M "$mode" -c "$CLIENTS" -j "$j" -T "$dur" \
    -h 127.0.0.1 -p "$port" -U postgres "$db" >"$log" 2>&1 || rc=$?
  c1=$(proxy_cpu "$pp")
  [ "$rep" = 0 ] && return 0
  local tps lat failed tx cpu
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$log" | tail -1)
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$log" | tail -1)
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log" | tail -1)
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log" | tail -1)
  cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b - a}')
  echo "$mode,$CLIENTS,$name,$rep,${tps:-},${lat:-},${failed:-},$rc,${tx:-},$cpu" >>"$CSV"
  printf '%-9s c=%-3s %-16s rep%s  tps=%-10s lat=%-7s ms  rc=%s\n' "$mode" "$CLIENTS" "$name" "$rep" \
    "${tps:-FAIL}" "${lat:--}" "$rc"
  if [ "$rc" != 0 ] || [ -z "$tps" ] || [ "${failed:-0}" != 0 ] || grep -qiE 'error|aborted' "$log"; then
    warn "$name -M $mode rep$rep failed ($log):"
    grep -iE 'error|aborted|fatal' "$log" | sort | uniq -c | sort -rn | head -5 >&2
    bad=1
  fi
}

{
  echo "# benches/sharding.sh $(date -Is)"
  echo "host: $(nproc) CPUs, $(uname -r); $("$PG_BIN/pgbench" --version); $(pgbouncer --version | head -1)"
  echo "DURATION=$DURATION REPEATS=$REPEATS CLIENTS=$CLIENTS MODES='$MODES' SCALE=$SCALE"
} | tee "$OUT/meta.txt"

if [ "$WARMUP" -gt 0 ]; then
  log "warm-up: ${WARMUP} s per target (not recorded)"
  for t in "${TARGETS[@]}"; do
    for mode in $MODES; do run_one "$t" "$mode" 0 "$WARMUP" "$OUT/logs/warmup-$t-$mode.log"; done
  done
fi
for mode in $MODES; do
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for t in "${TARGETS[@]}"; do
      run_one "$t" "$mode" "$rep" "$DURATION" "$OUT/logs/$mode-c$CLIENTS-$t-r$rep.log"
    done
  done
done

# ------------------------------------------------------------------ summary
python3 - "$CSV" <<'PY' | tee "$OUT/sharding.md"
import csv, statistics as st, sys
from collections import OrderedDict

rows = list(csv.DictReader(open(sys.argv[1])))

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

by = OrderedDict()
for r in rows:
    by.setdefault(r["mode"], OrderedDict()).setdefault(r["target"], []).append(r)

def agg(rs):
    if not rs:
        return None
    good = [r for r in rs if r["rc"] == "0" and num(r["tps"]) is not None and r["failed"] in ("", "0")]
    tx = sum(num(r["tx"]) or 0 for r in rs)
    cpu = sum(num(r["cpu_proxy_s"]) or 0 for r in rs)
    return {
        "tps": st.median(num(r["tps"]) for r in good) if good else None,
        "lat": st.median(num(r["lat_ms"]) for r in good) if good else None,
        "us": cpu / tx * 1e6 if tx and cpu else None,
        "failed": len(rs) - len(good),
    }

def ratio(a, b):
    if not a or not b or a["tps"] is None or not b["tps"]:
        return "-"
    return f"{a['tps'] / b['tps']:.2f}"

print("\n## pgbench, read-only script keyed by aid (medians over repetitions)\n")
print("PgBouncer: transaction pool for -M simple, session pool for -M prepared.\n")
print("| mode | target | TPS | latency ms | proxy CPU µs/tx | failed runs |")
print("|---|---|---:|---:|---:|---:|")
for mode, ts in by.items():
    for t, rs in ts.items():
        a = agg(rs)
        tps = f"{a['tps']:.0f}" if a["tps"] is not None else "FAIL"
        lat = f"{a['lat']:.3f}" if a["lat"] is not None else "-"
        us = f"{a['us']:.1f}" if a["us"] is not None else "-"
        print(f"| {mode} | {t} | {tps} | {lat} | {us} | {a['failed']} |")
print()
print("| mode | pgproxy-2shards / pgproxy-1shard | pgproxy-1shard / direct | pgproxy-1shard / PgBouncer "
      "| pgproxy-2shards / PgBouncer | pgproxy-2shards / direct |")
print("|---|---:|---:|---:|---:|---:|")
for mode, ts in by.items():
    g = {t: agg(rs) for t, rs in ts.items()}
    p1, p2, d, b = g.get("pgproxy-1shard"), g.get("pgproxy-2shards"), g.get("direct"), g.get("pgbouncer")
    print(f"| {mode} | {ratio(p2, p1)} | {ratio(p1, d)} | {ratio(p1, b)} | {ratio(p2, b)} | {ratio(p2, d)} |")
PY
echo "results: $CSV  summary: $OUT/sharding.md  logs: $OUT/logs/  pgproxy: $DIR/p1, $DIR/p2"
[ "$bad" = 0 ] || { warn "some runs failed: see the warnings above and $DIR/p*/pgproxy.log"; exit 1; }
