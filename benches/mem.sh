#!/usr/bin/env bash
# benches/mem.sh - pgproxy's memory (RSS/PSS) with N idle clients, via ../shared/bench/mem.sh.
#
#   benches/mem.sh [N] [extra TARGET...]        N defaults to 10000
#
# Builds pgproxy (cargo build --release), starts ../shared/bench's node1 (127.0.0.1:55433, db
# bench) and pgproxy on 127.0.0.1:$PGPROXY_BENCH_PORT (7432; transaction pooling, pool 20),
# then ../shared/bench/mem.sh opens N connections through it (each runs SELECT 1, then stays
# idle) and reports the proxy's RSS/PSS before and after, and MB per 1,000 clients.
#
# N clients need N open files in the client (mem.py holds every connection in one process) and
# in pgproxy: the open-files soft limit is raised to the hard limit, which must be >= N + 200.
#
# Env: PGPROXY_BENCH_PORT=7432 PGPROXY_BENCH_DIR=/tmp/pgproxy-bench KEEP=0 (1 = leave running)
#   WITH_PGBOUNCER=0  1 = also measure PgBouncer's transaction pool (its config holds at most
#                     2,000 clients: use N <= 2000)
#   KEEP_CONFIG=1     passed to ../shared/bench/mem.sh: 1 = do not restart the nodes with
#                     max_connections=1100 (pgproxy needs only its pool of 20). Set 0 together with
#                     extra targets that need one backend per client (direct=..., pgpool), N <= 1000.
#   OUT=/tmp/pgbench-results/pgproxy-mem-<timestamp>   SHARED_BENCH=<repo>/../shared/bench
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"

SHARED=${SHARED_BENCH:-$PGPROXY_ROOT/../shared/bench}
[ -f "$SHARED/mem.sh" ] && [ -f "$SHARED/mem.py" ] && [ -f "$SHARED/pgcluster.sh" ] \
  || die "shared benchmark scripts not found in $SHARED (expected ../shared/bench beside the repo; set SHARED_BENCH)"
SHARED=$(cd "$SHARED" && pwd)

N=${1:-10000}; shift || true
case $N in ''|*[!0-9]*) die "usage: $0 [N] [extra TARGET...]  (N = number of idle clients)" ;; esac
BENCH_PORT=${PGPROXY_BENCH_PORT:-7432}
BENCH_DIR=${PGPROXY_BENCH_DIR:-/tmp/pgproxy-bench}
KEEP=${KEEP:-0}
WITH_PGBOUNCER=${WITH_PGBOUNCER:-0}
export KEEP_CONFIG=${KEEP_CONFIG:-1}
export OUT=${OUT:-/tmp/pgbench-results/pgproxy-mem-$(date +%Y%m%d-%H%M%S)}
NODE1_PORT=55433

# ------------------------------------------------------------------ limits
need=$((N + 200))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  ulimit -Hn "$need" 2>/dev/null || true
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    die "open-files hard limit is $hard, $N clients need $need: lower N (e.g. $0 $((hard - 200))) or raise the limit (ulimit -Hn / limits.conf)"
  fi
fi
# the soft limit, inherited by pgproxy and by mem.py
if [ "$hard" = unlimited ]; then ulimit -n $((need > 65536 ? need : 65536)); else ulimit -n "$hard"; fi
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
if [ $((hi - lo)) -lt $((N + 1000)) ]; then
  die "ephemeral port range $lo-$hi is too small for $N client connections from one address"
fi

# ------------------------------------------------------------------ tools
ensure_postgres
export PGBIN=$PG_BIN            # the shared scripts default to /usr/lib/postgresql/15/bin
ensure_rust
command -v python3 >/dev/null || apt_install python3
# mem.sh makes a venv with psycopg in it (PyPI)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
if [ "$WITH_PGBOUNCER" = 1 ]; then ensure_pgbouncer; fi

log "cargo build --release"
(cd "$PGPROXY_ROOT" && cargo build --release --bin pgproxy) || die "cargo build --release failed"
BIN=$(cargo_target_dir)/release/pgproxy

# ------------------------------------------------------------------ servers
node_was_running=0; bash "$SHARED/pgcluster.sh" status 1 | grep -q '^node1: running' && node_was_running=1
pgb_was_running=0;  bash "$SHARED/proxies.sh" status | grep -q '^pgbouncer: running' && pgb_was_running=1

cleanup() {
  if [ "$KEEP" = 1 ]; then log "KEEP=1: leaving node1 and pgproxy running"; return 0; fi
  pgproxy_stop "$BENCH_DIR"
  if [ "$WITH_PGBOUNCER" = 1 ] && [ "$pgb_was_running" = 0 ]; then bash "$SHARED/proxies.sh" stop pgbouncer; fi
  if [ "$node_was_running" = 0 ]; then bash "$SHARED/pgcluster.sh" stop 1; fi
  return 0
}
trap cleanup EXIT

bash "$SHARED/pgcluster.sh" start 1
bench_pgproxy_up "$BIN" "$BENCH_DIR" "$BENCH_PORT" "$NODE1_PORT" $((N + 1000 > 20000 ? N + 1000 : 20000))

TARGETS=("pgproxy=127.0.0.1:$BENCH_PORT/bench")
if [ "$WITH_PGBOUNCER" = 1 ]; then
  if [ "$N" -gt 2000 ]; then
    warn "PgBouncer's bench config holds at most 2,000 clients: not measuring it at N=$N"
  else
    if [ "$pgb_was_running" = 0 ] && port_in_use 6432; then
      die "port 6432 (PgBouncer's in the shared bench) is taken by another program (scripts/demo stop?)"
    fi
    bash "$SHARED/proxies.sh" start pgbouncer
    TARGETS+=("pgbouncer-tx=127.0.0.1:6432/bench_tx")
  fi
fi
TARGETS+=("$@")

log "mem.sh $N ${TARGETS[*]}  (OUT=$OUT, open files $(ulimit -n))"
bash "$SHARED/mem.sh" "$N" "${TARGETS[@]}"
held=$(sed -n 's/^# pgproxy: \([0-9]*\) clients open.*/\1/p' "$OUT/mem.md" | head -1)
if [ "${held:-0}" -lt "$N" ]; then
  warn "pgproxy held ${held:-0} of $N clients (see errors above and $BENCH_DIR/pgproxy.log)"
  exit 1
fi
