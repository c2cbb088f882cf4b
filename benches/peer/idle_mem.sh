#!/usr/bin/env bash
# PSS per idle keep-alive TLS connection of a proxy, as BENCHMARKS.md reports it.
#
#   bash benches/peer/idle_mem.sh NAME PROTO N PORT COMMAND...
#   bash benches/peer/idle_mem.sh levee h1 5000 9443 target/release/levee run --config levee.toml
#   bash benches/peer/idle_mem.sh haproxy h2 5000 8443 haproxy -f haproxy.cfg -db
#
# Starts COMMAND (a fresh process, listening with TLS on 127.0.0.1:PORT), sends it one GET,
# reads its PSS (/proc/PID/smaps_rollup), then holds N idle connections with
# benches/peer/idle_conns.py (one full handshake and one GET each, then silent) and reads
# the PSS again SETTLE seconds (default 5) after all are held: levee parks an HTTP/1
# connection after 1 s between requests, and its allocator returns freed pages about a
# second later. Prints the difference divided by N. The proxy and the holder are stopped
# by their PIDs. Loopback only; every wait is bounded.
set -euo pipefail
name=$1; proto=$2; n=$3; port=$4; shift 4
settle=${SETTLE:-5}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
pss() { awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup"; }

setsid "$@" > "$work/$name.out" 2>&1 < /dev/null &
proxy=$!
trap 'kill "$proxy" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$port/" && break; sleep 0.2; done
sleep 1
before=$(pss "$proxy")

mkfifo "$work/stdin"
python3 "$here/idle_conns.py" --port "$port" --conns "$n" --proto "$proto" --hold 120 \
  < "$work/stdin" > "$work/hold.out" 2>&1 &
holder=$!
exec 9> "$work/stdin"
for _ in $(seq 120); do grep -q held "$work/hold.out" && break; sleep 1; done
sleep "$settle"
held=$(pss "$proxy")
open=$(ss -tn state established "( sport = :$port )" | tail -n +2 | wc -l)
exec 9>&-
wait "$holder" || true
kill "$proxy" 2>/dev/null || true
wait "$proxy" 2>/dev/null || true
awk -v name="$name" -v p="$proto" -v n="$n" -v b="$before" -v a="$held" -v open="$open" \
  -v holder="$(head -1 "$work/hold.out")" \
  'BEGIN { printf "%s %s: %s; %d established; PSS at rest %.1f MB, held %.1f MB, per connection %.1f KB\n",
           name, p, holder, open, b / 1024, a / 1024, (a - b) / n }'
