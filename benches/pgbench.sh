#!/usr/bin/env bash
# benches/pgbench.sh - end-to-end benchmark: pgbench through pgproxy, PgBouncer and directly.
#
#   benches/pgbench.sh [extra TARGET...]     (TARGET as in ../shared/bench/peers.sh)
#
# In ONE interleaved run (scenario -> repetition -> target), `pgbench -n -S` at 1, 16 and 64
# clients with -M simple, extended and prepared against:
#   direct             127.0.0.1:55433/bench       PostgreSQL node1 of ../shared/bench/pgcluster.sh
#   pgproxy            127.0.0.1:7432/bench        this repo's release build, transaction pooling,
#                                                  pool size 20 (started and stopped by this script)
#   pgbouncer-tx       127.0.0.1:6432/bench_tx     PgBouncer transaction pool 20 (no -M prepared:
#                                                  PgBouncer < 1.21 cannot keep prepared
#                                                  statements in transaction mode)
#   pgbouncer-session  127.0.0.1:6432/bench_session  PgBouncer session pool: the -M prepared peer
#                                                  (it runs -M simple too, as a reference)
# and prints TPS, latency, proxy CPU microseconds per transaction, pgproxy/direct and
# pgproxy/PgBouncer. The machinery is ../shared/bench (pgcluster.sh, proxies.sh, peers.sh,
# summarize.py), used as is.
#
# Env (defaults): DURATION=15 REPEATS=2 CLIENTS="1 16 64" MODES="simple extended prepared"
#   SCENARIOS=select (add tpcb for the TPC-B-like write script)  QUIET_WAIT RETRIES OTHER_MAX
#   WARMUP ... (every peers.sh knob passes through)
#   OUT=/tmp/pgbench-results/pgproxy-<timestamp>   results.csv, logs/, summary.md, pgproxy.md
#   PGPROXY=1        0 = leave pgproxy out (direct and PgBouncer only; no cargo build)
#   PGPROXY_BENCH_PORT=7432  PGPROXY_BENCH_DIR=/tmp/pgproxy-bench (its config, log, pid)
#   KEEP=0           1 = leave node1, PgBouncer and pgproxy running afterwards
#   SHARED_BENCH=<repo>/../shared/bench
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"

SHARED=${SHARED_BENCH:-$PGPROXY_ROOT/../shared/bench}
[ -f "$SHARED/peers.sh" ] && [ -f "$SHARED/pgcluster.sh" ] && [ -f "$SHARED/proxies.sh" ] \
  || die "shared benchmark scripts not found in $SHARED (expected ../shared/bench beside the repo; set SHARED_BENCH)"
SHARED=$(cd "$SHARED" && pwd)

USE_PGPROXY=${PGPROXY:-1}
BENCH_PORT=${PGPROXY_BENCH_PORT:-7432}
BENCH_DIR=${PGPROXY_BENCH_DIR:-/tmp/pgproxy-bench}
KEEP=${KEEP:-0}
NODE1=127.0.0.1:55433
PGB_PORT=6432
export OUT=${OUT:-/tmp/pgbench-results/pgproxy-$(date +%Y%m%d-%H%M%S)}
export SCENARIOS=${SCENARIOS:-select}
export BACKENDS=$NODE1          # peers.sh: pgbench -i and vacuum on node1 only
export PGUSER=postgres PGPASSWORD=postgres   # the shared scripts' user (trust auth on 127.0.0.1)
MODES_EFFECTIVE=${MODES:-simple extended prepared}

ensure_postgres
export PGBIN=$PG_BIN            # the shared scripts default to /usr/lib/postgresql/15/bin
ensure_pgbouncer
command -v python3 >/dev/null || apt_install python3

# ------------------------------------------------------------------ build
BIN=$(cargo_target_dir)/release/pgproxy
if [ "$USE_PGPROXY" = 1 ]; then
  ensure_rust
  log "cargo build --release"
  (cd "$PGPROXY_ROOT" && cargo build --release --bin pgproxy) || die "cargo build --release failed"
fi

# ------------------------------------------------------------------ servers
node_was_running=0; bash "$SHARED/pgcluster.sh" status 1 | grep -q '^node1: running' && node_was_running=1
pgb_was_running=0;  bash "$SHARED/proxies.sh" status | grep -q '^pgbouncer: running' && pgb_was_running=1
if [ "$pgb_was_running" = 0 ] && port_in_use "$PGB_PORT"; then
  die "port $PGB_PORT (PgBouncer's in the shared bench) is taken by another program; is scripts/demo running? (scripts/demo stop)"
fi

cleanup() {
  if [ "$KEEP" = 1 ]; then log "KEEP=1: leaving node1, PgBouncer and pgproxy running"; return 0; fi
  if [ "$USE_PGPROXY" = 1 ]; then pgproxy_stop "$BENCH_DIR"; fi
  if [ "$pgb_was_running" = 0 ]; then bash "$SHARED/proxies.sh" stop pgbouncer; fi
  if [ "$node_was_running" = 0 ]; then bash "$SHARED/pgcluster.sh" stop 1; fi
  return 0
}
trap cleanup EXIT

bash "$SHARED/pgcluster.sh" start 1
bash "$SHARED/proxies.sh" start pgbouncer

if [ "$USE_PGPROXY" = 1 ]; then
  bench_pgproxy_up "$BIN" "$BENCH_DIR" "$BENCH_PORT" "${NODE1#*:}"
fi

# ------------------------------------------------------------------ run
TARGETS=("direct=$NODE1/bench")
if [ "$USE_PGPROXY" = 1 ]; then TARGETS+=("pgproxy=127.0.0.1:$BENCH_PORT/bench"); fi
TARGETS+=("pgbouncer-tx=127.0.0.1:$PGB_PORT/bench_tx:noprepared")
case " $MODES_EFFECTIVE " in
  *" prepared "*) TARGETS+=("pgbouncer-session=127.0.0.1:$PGB_PORT/bench_session:noextended") ;;
esac
TARGETS+=("$@")

log "peers.sh ${TARGETS[*]}  (OUT=$OUT)"
rc=0
bash "$SHARED/peers.sh" "${TARGETS[@]}" || rc=$?
[ -f "$OUT/results.csv" ] || die "peers.sh produced no $OUT/results.csv"

# ------------------------------------------------------------------ pgproxy vs the others
python3 - "$OUT/results.csv" <<'PY' | tee "$OUT/pgproxy.md"
import csv, os, statistics as st, sys
from collections import OrderedDict

OTHER_MAX = float(os.environ.get("OTHER_MAX", "10"))
rows = list(csv.DictReader(open(sys.argv[1])))

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def ok(r):
    return r["rc"] in ("0", "") and r["failed"] in ("", "0") and num(r["tps"]) is not None

def agg(rs):
    if not rs:
        return None
    good = [r for r in rs if ok(r)]
    tx = sum(num(r["tx"]) or 0 for r in rs)
    px = sum(num(r["cpu_proxy_s"]) or 0 for r in rs)
    return {
        "fail": len(good) < len(rs),
        "noisy": any((num(r["other_pct"]) or 0) > OTHER_MAX for r in rs),
        "tps": st.median(num(r["tps"]) for r in good) if good else None,
        "lat": st.median(num(r["lat_ms"]) for r in good if num(r["lat_ms"]) is not None) if good else None,
        "us": px / tx * 1e6 if tx else None,
    }

def fmt(a, key, spec):
    if a is None:
        return "-"
    v = a[key]
    if v is None:
        return "FAIL" if key == "tps" else "-"
    s = format(v, spec)
    if key == "tps":
        s += ("*" if a["noisy"] else "") + (" (some runs failed)" if a["fail"] else "")
    return s

def ratio(a, b):
    if not a or not b or a["tps"] is None or not b["tps"] or a["fail"]:
        return "-"
    return f"{a['tps'] / b['tps']:.2f}"

groups = OrderedDict()
for r in rows:
    groups.setdefault((r["scenario"], r["mode"], r["clients"]), {}).setdefault(r["target"], []).append(r)

print("\n## pgproxy vs direct and PgBouncer (medians over repetitions)\n")
print("PgBouncer = transaction pool for -M simple/extended, session pool for -M prepared.")
print("us/tx = proxy CPU microseconds per transaction; * = a run had other-CPU > %.0f %% (noisy).\n" % OTHER_MAX)
print("| scenario | mode | c | direct tps | pgproxy tps | PgBouncer tps | pgproxy lat ms | PgBouncer lat ms "
      "| pgproxy us/tx | PgBouncer us/tx | pgproxy/direct | pgproxy/PgBouncer |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (sc, mode, c), t in groups.items():
    peer_name = "pgbouncer-session" if mode == "prepared" else "pgbouncer-tx"
    d, p, b = agg(t.get("direct")), agg(t.get("pgproxy")), agg(t.get(peer_name))
    print(f"| {sc} | {mode} | {c} | {fmt(d, 'tps', '.0f')} | {fmt(p, 'tps', '.0f')} | {fmt(b, 'tps', '.0f')} "
          f"| {fmt(p, 'lat', '.3f')} | {fmt(b, 'lat', '.3f')} | {fmt(p, 'us', '.1f')} | {fmt(b, 'us', '.1f')} "
          f"| {ratio(p, d)} | {ratio(p, b)} |")
PY

if [ "$USE_PGPROXY" = 1 ] && grep -q ',pgproxy,' "$OUT/results.csv" \
   && awk -F, '$4 == "pgproxy" && ($9 != "0" || $6 == "" || ($8 != "" && $8 != "0")) {bad = 1} END {exit !bad}' "$OUT/results.csv"; then
  warn "some pgproxy runs failed: see $OUT/logs/*-pgproxy-*.log and $BENCH_DIR/pgproxy.log"
  rc=1
fi
echo "results: $OUT  (summary.md: every target with ratios to direct; pgproxy.md: the table above)"
exit $rc
