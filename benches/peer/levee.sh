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
# Knobs: LEVEE_BIN (default: target/release/levee of this checkout), LEVEE_WORKERS (2),
#        LEVEE_LOG (warn), LEVEE_GEO (on: GeoIP tagging and per-country stats as shipped;
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
cat > "$cfg" <<TOML
# Written by benches/peer/levee.sh for the peer benchmark.
[server]
workers = ${LEVEE_WORKERS:-2}
access_log = false

[admin]
listen = "off"

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

exec "$bin" run --config "$cfg" --log-level "${LEVEE_LOG:-warn}"
