#!/usr/bin/env bash
# levee as the "custom" proxy of the shared peer benchmark (../shared/bench/peers.sh).
#
# peers.sh runs this as `bash -c "exec $CUSTOM_CMD"` with PB_LISTEN, PB_BACKEND, PB_CERT,
# PB_KEY and PB_WORKDIR exported. The script writes a levee config for them and execs the
# release binary, so the PID the harness measures is levee itself.
#
# Build first (`cargo build --release`), then from the repository root:
#   CUSTOM_CMD="bash $PWD/benches/peer/levee.sh" CUSTOM_PORT=9443 \
#     bash ../shared/bench/peers.sh haproxy nginx custom
#
# The config sets only the listener, its certificate and the pool: everything else is
# levee's shipped default (config/levee.toml): the access log on, written to stdout at the
# default log level (info), the admin API on 127.0.0.1:9901, GeoIP tagging on.
#
# Knobs: LEVEE_BIN (default: target/release/levee of this checkout), LEVEE_WORKERS (unset:
#        one per core, the default), LEVEE_LOG (unset: the default level, info),
#        LEVEE_ACCESS_LOG (unset: the default, on; "false" turns it off),
#        LEVEE_ADMIN (unset: the default address; "off" turns it off),
#        LEVEE_GEO (on: GeoIP tagging and per-country stats as shipped;
#        off: `[geo] enabled = false`, for the on/off cost comparison).
set -euo pipefail

: "${PB_LISTEN:?PB_LISTEN not set (run me through peers.sh)}"
: "${PB_BACKEND:?PB_BACKEND not set}"
: "${PB_CERT:?PB_CERT not set}"
: "${PB_KEY:?PB_KEY not set}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${LEVEE_BIN:-$root/target/release/levee}"
[ -x "$bin" ] || { echo "levee.sh: $bin not found; run 'cargo build --release' first" >&2; exit 1; }

workdir="${PB_WORKDIR:-$(mktemp -d)}"
case "${LEVEE_GEO:-on}" in
  on) GEO_ENABLED=true ;;
  off) GEO_ENABLED=false ;;
  *) echo "levee.sh: LEVEE_GEO must be on or off" >&2; exit 1 ;;
esac
cfg="$workdir/levee.toml"
server=""
[ -n "${LEVEE_WORKERS:-}" ] && server+="workers = ${LEVEE_WORKERS}"$'\n'
[ -n "${LEVEE_ACCESS_LOG:-}" ] && server+="access_log = ${LEVEE_ACCESS_LOG}"$'\n'
admin=""
[ -n "${LEVEE_ADMIN:-}" ] && admin="listen = \"${LEVEE_ADMIN}\""
cat > "$cfg" <<TOML
# Written by benches/peer/levee.sh for the peer benchmark.
[server]
${server}
[admin]
${admin}

[[listeners]]
name = "bench"
listen = "$PB_LISTEN"
default_pool = "backend"

[listeners.tls]
certificates = [{ cert = "$PB_CERT", key = "$PB_KEY" }]

[pools.backend]
algorithm = "round_robin"

[geo]
enabled = ${GEO_ENABLED}

[[pools.backend.backends]]
address = "$PB_BACKEND"
TOML

if [ -n "${LEVEE_LOG:-}" ]; then
  exec "$bin" run --config "$cfg" --log-level "$LEVEE_LOG"
fi
exec "$bin" run --config "$cfg"
