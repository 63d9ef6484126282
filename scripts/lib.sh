# shellcheck shell=bash
# scripts/lib.sh - helpers sourced by scripts/test, scripts/demo and benches/*.sh.
#
#   source "$(dirname "$0")/lib.sh"     (or ../scripts/lib.sh from benches/)
#
# What it gives:
#   PGPROXY_ROOT          absolute path of the repository
#   log / warn / die      messages on stderr (die exits 1)
#   ensure_rust           cargo (and, with "fmt clippy" as arguments, rustfmt/clippy) present
#   ensure_postgres       PostgreSQL server binaries present (apt-get installs them if not);
#                         exports PG_BIN (the bindir holding initdb, pg_ctl, postgres, psql, pgbench)
#   ensure_pgbouncer      pgbouncer present (apt-get installs it if not; benchmarks only)
#   run_as_pg CMD...      runs CMD as the unprivileged OS user $PG_OS_USER (default postgres) when
#                         we are root (postgres refuses to run as root), directly otherwise
#   port_in_use PORT      true if something listens on 127.0.0.1:PORT
#   free_port [PREFERRED] prints PREFERRED if it is free, else a free port picked by the kernel
#   cargo_target_dir      prints the absolute cargo target directory (honours CARGO_TARGET_DIR)
#   pgproxy_start / pgproxy_stop / pgproxy_pid   run a built pgproxy in the background
#
# Only bash and coreutils are assumed; apt-get is used when something is missing and we are root.

PGPROXY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_OS_USER=${PG_OS_USER:-postgres}

log()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# apt_install PKG... : installs Debian packages (root only), running `apt-get update` once.
apt_install() {
  is_root || die "need root to install $* (or install it yourself: apt-get install $*)"
  command -v apt-get >/dev/null || die "no apt-get here: install $* with this system's package manager"
  if [ -z "${_PGPROXY_APT_UPDATED:-}" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
      || die "apt-get update failed"
    _PGPROXY_APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# ------------------------------------------------------------------ Rust

# ensure_rust [fmt] [clippy] : cargo must exist; optionally rustfmt and clippy too.
# Rust cannot be installed from here (rustup downloads toolchains), so this only checks.
ensure_rust() {
  local cargo_home=${CARGO_HOME:-${HOME:-/root}/.cargo}
  if ! command -v cargo >/dev/null && [ -x "$cargo_home/bin/cargo" ]; then
    PATH="$cargo_home/bin:$PATH"; export PATH
  fi
  command -v cargo >/dev/null \
    || die "cargo not found: install a Rust toolchain (https://rustup.rs) and put cargo on PATH"
  local c
  for c in "$@"; do
    case $c in
      fmt)    cargo fmt --version >/dev/null 2>&1 \
                || die "rustfmt not found: rustup component add rustfmt" ;;
      clippy) cargo clippy --version >/dev/null 2>&1 \
                || die "clippy not found: rustup component add clippy" ;;
      *) die "ensure_rust: unknown component $c" ;;
    esac
  done
}

# cargo_target_dir : where cargo puts its output (CARGO_TARGET_DIR, relative to the repo root, or
# target/).
cargo_target_dir() {
  local d=${CARGO_TARGET_DIR:-target}
  case $d in /*) ;; *) d=$PGPROXY_ROOT/$d ;; esac
  printf '%s\n' "$d"
}

# ------------------------------------------------------------------ PostgreSQL

_pg_bin_ok() { [ -n "${1:-}" ] && [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

# _find_pg_bin : prints the newest bindir with the server binaries, or nothing.
_find_pg_bin() {
  local d
  for d in "${PGPROXY_PG_BIN:-}" \
           "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)" \
           "$(pg_config --bindir 2>/dev/null)" \
           "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"; do
    if _pg_bin_ok "$d"; then printf '%s\n' "$d"; return 0; fi
  done
  return 0
}

# ensure_postgres : PostgreSQL server binaries present, the OS user to run them exists;
# exports PG_BIN. PGPROXY_PG_BIN, if set, must point at a bindir holding initdb.
ensure_postgres() {
  if [ -n "${PGPROXY_PG_BIN:-}" ] && ! _pg_bin_ok "$PGPROXY_PG_BIN"; then
    die "PGPROXY_PG_BIN=$PGPROXY_PG_BIN has no initdb/pg_ctl/postgres"
  fi
  PG_BIN=$(_find_pg_bin)
  if [ -z "$PG_BIN" ]; then
    # Debian/Ubuntu: the `postgresql` metapackage pulls the distribution's current server and
    # client. Its postinst may create a `main` cluster; it is not used (and under a
    # policy-rc.d that forbids starting services, e.g. in containers, not started).
    apt_install postgresql
    PG_BIN=$(_find_pg_bin)
    [ -n "$PG_BIN" ] || die "installed postgresql but found no initdb under /usr/lib/postgresql/*/bin"
  fi
  local b
  for b in psql pgbench pg_isready; do
    [ -x "$PG_BIN/$b" ] || die "$PG_BIN has initdb but no $b (install the PostgreSQL client package)"
  done
  export PG_BIN
  if is_root && ! id "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating OS user $PG_OS_USER (postgres refuses to run as root)"
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$PG_OS_USER" \
      || die "could not create OS user $PG_OS_USER"
  fi
}

# run_as_pg CMD... : CMD as $PG_OS_USER when we are root (from /tmp, with that user's HOME, so
# that an unreadable cwd or ~/.psqlrc does not get in the way); directly otherwise.
# exec's the command, so `run_as_pg foo &` gives foo's pid in $!.
run_as_pg() {
  if is_root; then
    local home
    home=$(getent passwd "$PG_OS_USER" | cut -d: -f6)
    [ -d "$home" ] || home=/tmp
    if command -v setpriv >/dev/null; then
      ( cd /tmp && exec setpriv --reuid="$PG_OS_USER" --regid="$(id -g "$PG_OS_USER")" --init-groups \
          -- env HOME="$home" USER="$PG_OS_USER" LOGNAME="$PG_OS_USER" "$@" )
    else
      ( cd /tmp && HOME=$home USER=$PG_OS_USER LOGNAME=$PG_OS_USER exec runuser -u "$PG_OS_USER" -- "$@" )
    fi
  else
    "$@"
  fi
}

# ------------------------------------------------------------------ PgBouncer

# ensure_pgbouncer : pgbouncer on PATH (Debian package; benchmarks only).
ensure_pgbouncer() {
  command -v pgbouncer >/dev/null && return 0
  apt_install pgbouncer
  command -v pgbouncer >/dev/null || die "installed pgbouncer but it is not on PATH"
}

# ------------------------------------------------------------------ ports

# port_in_use PORT : something accepts TCP connections (or listens) on 127.0.0.1:PORT.
port_in_use() {
  local p=$1
  if command -v ss >/dev/null; then
    [ -n "$(ss -ltnH "sport = :$p" 2>/dev/null)" ] && return 0
    return 1
  fi
  # no ss: try to connect (bash's /dev/tcp)
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
}

# free_port [PREFERRED] : PREFERRED if nothing listens there, else a free port from 20000-39999.
free_port() {
  local p=${1:-}
  if [ -n "$p" ] && ! port_in_use "$p"; then echo "$p"; return 0; fi
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if ! port_in_use "$p"; then echo "$p"; return 0; fi
  done
  die "no free TCP port found on 127.0.0.1"
}

# ------------------------------------------------------------------ pgproxy process

# pgproxy_pid DIR : pid from DIR/pgproxy.pid if that process is alive and is pgproxy.
pgproxy_pid() {
  local f=$1/pgproxy.pid p
  [ -f "$f" ] || return 0
  p=$(head -1 "$f" | tr -cd '0-9')
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  # the executable's name (" (deleted)" once cargo has replaced the binary)
  case $(readlink "/proc/$p/exe" 2>/dev/null) in
    */pgproxy|*/pgproxy" (deleted)") echo "$p" ;;
  esac
  return 0
}

# pgproxy_start BIN CONFIG DIR PORT [USER DB] : checks CONFIG (--check-config), starts
# `BIN --config CONFIG` in the background (log DIR/pgproxy.log, pid DIR/pgproxy.pid, open-files
# limit raised to the hard limit) and waits until it answers on 127.0.0.1:PORT.
pgproxy_start() {
  local bin=$1 conf=$2 dir=$3 port=$4 user=${5:-postgres} db=${6:-postgres}
  [ -x "$bin" ] || die "no pgproxy binary at $bin (cargo build --release)"
  mkdir -p "$dir"
  if ! "$bin" --check-config "$conf" >"$dir/check-config.out" 2>&1; then
    cat "$dir/check-config.out" >&2
    die "pgproxy --check-config $conf failed"
  fi
  if port_in_use "$port"; then
    die "port $port is already in use (ss -ltnp 'sport = :$port' shows by what)"
  fi
  local log=$dir/pgproxy.log
  echo "---- $(date -Is) start $bin --config $conf" >>"$log"
  ( ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    exec nohup "$bin" --config "$conf" </dev/null >>"$log" 2>&1 ) &
  local pid=$!
  echo "$pid" >"$dir/pgproxy.pid"
  for _ in $(seq 1 150); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$log" >&2
      rm -f "$dir/pgproxy.pid"
      die "pgproxy exited during startup (log: $log)"
    fi
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -t 1 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  tail -20 "$log" >&2
  die "pgproxy (pid $pid) does not answer on 127.0.0.1:$port after 30 s (log: $log)"
}

# pgproxy_stop DIR : stops the pgproxy whose pid is in DIR/pgproxy.pid (SIGTERM drains; then
# SIGINT, then SIGKILL). Prints what it did.
pgproxy_stop() {
  local dir=$1 p
  p=$(pgproxy_pid "$dir")
  if [ -z "$p" ]; then rm -f "$dir/pgproxy.pid"; echo "pgproxy: not running"; return 0; fi
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then
    kill -INT "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  if kill -0 "$p" 2>/dev/null; then
    echo "pgproxy: pid $p still alive, sending KILL"
    kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$dir/pgproxy.pid"
  echo "pgproxy: stopped (pid $p)"
}

# ------------------------------------------------------------------ benchmarks

# bench_pgproxy_config DIR PORT NODE_PORT[,NODE_PORT...] [MAX_CLIENT_CONN] [COMMIT] : writes
# DIR/pgproxy.toml for the benchmarks: pgproxy in front of ../shared/bench's node(s) (db bench,
# OS/db user postgres with trust auth there; several ports = one replicated shard), listening on
# 127.0.0.1:PORT, transaction pooling with a pool of 20 like PgBouncer's bench_tx,
# worker_threads = 1, decision log DIR/decisions.log, replication.commit COMMIT (2pc).
bench_pgproxy_config() {
  local dir=$1 port=$2 node_ports=$3 max_clients=${4:-20000} commit=${5:-2pc}
  local node_port=${node_ports%%,*}
  mkdir -p "$dir"
  cat >"$dir/pgproxy.toml" <<EOT
# generated by benches/*.sh - pgproxy in front of ../shared/bench's node (127.0.0.1:$node_port)
[general]
listen = "127.0.0.1:$port"
pool_mode = "transaction"
default_pool_size = 20          # as PgBouncer's bench_tx pool
max_client_conn = $max_clients
idle_timeout_ms = 10000         # as the peers: idle server connections close after ~10 s
worker_threads = 1
auth_method = "trust"

[[users]]
name = "postgres"
password = "postgres"
auth_method = "trust"

[[databases]]
name = "bench"

[[shards]]
name = "s0"


[replication]
decision_log = "$dir/decisions.log"
commit = "$commit"
EOT
  local np
  for np in ${node_ports//,/ }; do
    printf '\n[[shards.nodes]]\nhost = "127.0.0.1"\nport = %s\n' "$np" >>"$dir/pgproxy.toml"
  done
}

# bench_pgproxy_up BIN DIR PORT NODE_PORT[,NODE_PORT...] [MAX_CLIENT_CONN] [COMMIT] : (re)starts pgproxy
# for the benchmarks with `bench_pgproxy_config`'s config DIR/pgproxy.toml, log DIR/pgproxy.log.
# Logs at RUST_LOG (warn, and node state changes; `bench_nodes_changed` reads them).
# The decision log and its list of detached nodes from an earlier run are removed: a node
# detached then would otherwise stay detached, and a "2 nodes" target would run on one.
bench_pgproxy_up() {
  local bin=$1 dir=$2 port=$3 node_ports=$4 max_clients=${5:-20000} commit=${6:-2pc}
  mkdir -p "$dir"
  pgproxy_stop "$dir" >/dev/null      # a leftover from an earlier run
  rm -f "$dir/decisions.log" "$dir/decisions.log.nodes"
  bench_pgproxy_config "$dir" "$port" "$node_ports" "$max_clients" "$commit"
  RUST_LOG=${RUST_LOG:-warn,pgproxy::cluster::nodes=info} pgproxy_start "$bin" "$dir/pgproxy.toml" "$dir" "$port" postgres bench
  log "pgproxy: pid $(pgproxy_pid "$dir") on 127.0.0.1:$port (config $dir/pgproxy.toml, log $dir/pgproxy.log)"
}

# bench_nodes_changed DIR : prints the node state changes (detach, failover) that pgproxy DIR
# logged since its last start; nothing if every node stayed up.
bench_nodes_changed() {
  local log=$1/pgproxy.log
  [ -f "$log" ] || return 0
  awk '/^---- .* start /{buf=""; next} /node state changed|failover|last up node|quarantined/{buf=buf $0 "\n"} END{printf "%s", buf}' "$log"
}
