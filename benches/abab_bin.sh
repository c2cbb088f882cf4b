#!/usr/bin/env bash
# No cost of a change: two levee binaries, A (before) and B (after), on the same shipped
# defaults, in alternating rounds A B A B ... of the same run. Each round measures with
# h2load, each for SECS seconds:
#   - h1 plain: HTTP/1.1 keep-alive, 32 connections, on a plain listener;
#   - h1 TLS:   HTTP/1.1 keep-alive, 32 connections, on a TLS listener (ALPN http/1.1);
#   - h2 TLS:   HTTP/2, 8 connections x 10 streams (-m 10), on the TLS listener.
# levee (1 worker, access log on to a file, no [admission] keys) on LEVEE_CPU; h2load and the
# backend on TOOL_CPU. BACKEND=demo: `levee bench backends` (of binary B); BACKEND=python: a
# Python http.server that writes head and body in two sends (benches/peer/split_latency.py's
# shape). Prints each round and B/A of the arms' means (1.00 = no cost).
#
# Usage, from the repository root:
#   LEVEE_A=/tmp/levee-before LEVEE_B=target/release/levee bash benches/abab_bin.sh
# Knobs: ROUNDS (pairs, 3), SECS (8), BACKEND (demo | python), LEVEE_CPU (0), TOOL_CPU (1),
# PORT_BASE (19700).
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
SECS="${SECS:-8}"
BACKEND="${BACKEND:-demo}"
LEVEE_CPU="${LEVEE_CPU:-0}"
TOOL_CPU="${TOOL_CPU:-1}"
PORT_BASE="${PORT_BASE:-19700}"
for n in ROUNDS SECS PORT_BASE; do
  [[ "${!n}" =~ ^[0-9]+$ ]] || { echo "abab_bin.sh: $n must be a whole number" >&2; exit 1; }
done
(( ROUNDS <= 10 && SECS <= 60 )) || { echo "abab_bin.sh: at most 10 rounds of 60 s" >&2; exit 1; }
[[ "$BACKEND" == demo || "$BACKEND" == python ]] || { echo "abab_bin.sh: BACKEND is demo or python" >&2; exit 1; }
[ -x "${LEVEE_A:-}" ] && [ -x "${LEVEE_B:-}" ] || { echo "abab_bin.sh: set LEVEE_A and LEVEE_B to two levee binaries" >&2; exit 1; }
command -v h2load >/dev/null || { echo "abab_bin.sh: h2load is needed (apt-get install nghttp2-client)" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
me=abab_bin.sh
# shellcheck source=lib.sh
source "$root/benches/lib.sh"
out="$root/target/abab-bin/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
work="$(mktemp -d)"
plain="127.0.0.1:$PORT_BASE"
tls="127.0.0.1:$((PORT_BASE + 1))"
backend="127.0.0.1:$((PORT_BASE + 3))"

backend_pid="" levee_pid=""
cleanup() { stop_pid "$levee_pid"; stop_pid "$backend_pid"; rm -rf "$work"; }
trap cleanup EXIT

if [ "$BACKEND" = demo ]; then
  taskset -c "$TOOL_CPU" "$LEVEE_B" bench backends --listen "$backend" --max-time 1h \
    >"$work/backend.log" 2>&1 &
else
  cat >"$work/split.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"hello from python\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()          # the head: one send
        self.wfile.flush()
        self.wfile.write(body)      # the body: another
    def log_message(self, *a): pass
host, port = sys.argv[1].rsplit(":", 1)
http.server.ThreadingHTTPServer((host, int(port)), H).serve_forever()
PY
  taskset -c "$TOOL_CPU" python3 "$work/split.py" "$backend" >"$work/backend.log" 2>&1 &
fi
backend_pid=$!
wait_port "$backend" "$backend_pid"

{
  printf '[server]\nworkers = 1\naccess_log_path = "%s"\nshutdown_timeout = "2s"\n\n' "$work/access.log"
  printf '[admin]\nlisten = "off"\n\n'
  printf '[[listeners]]\nname = "plain"\nlisten = "%s"\ndefault_pool = "app"\n\n' "$plain"
  printf '[[listeners]]\nname = "tls"\nlisten = "%s"\ndefault_pool = "app"\n[listeners.tls]\n\n' "$tls"
  printf '[pools.app]\n[[pools.app.backends]]\naddress = "%s"\n' "$backend"
} >"$work/levee.toml"

start_levee() { # BINARY
  "$1" check --config "$work/levee.toml" >/dev/null
  taskset -c "$LEVEE_CPU" "$1" run --config "$work/levee.toml" --log-level warn \
    >>"$out/levee.log" 2>&1 &
  levee_pid=$!
  wait_port "$plain" "$levee_pid"
  wait_port "$tls" "$levee_pid"
}

load() { # URL ARGS...: req/s (h2load's "finished in" line), 0 when requests failed
  local url="$1"; shift
  taskset -c "$TOOL_CPU" h2load "$@" -D "$SECS" "$url" 2>/dev/null \
    | awk '/^finished in/ { gsub(",", ""); rps = int($4) }
           /^requests:/ { gsub(",", ""); failed = $10; errored = $12 }
           END { print ((failed + errored) > 0 ? 0 : rps) }'
}

echo "round arm h1_plain h1_tls h2_tls" | tee "$out/rounds.txt"
for r in $(seq "$ROUNDS"); do
  for arm in A B; do
    if [ "$arm" = A ]; then start_levee "$LEVEE_A"; else start_levee "$LEVEE_B"; fi
    a="$(load "http://$plain/" --h1 -c 32)"
    b="$(load "https://localhost:${tls##*:}/" --connect-to="$tls" --h1 -c 32)"
    c="$(load "https://localhost:${tls##*:}/" --connect-to="$tls" -c 8 -m 10)"
    stop_pid "$levee_pid"
    levee_pid=""
    echo "$r $arm $a $b $c" | tee -a "$out/rounds.txt"
  done
done
{
  echo "A = $LEVEE_A; B = $LEVEE_B; backend $BACKEND; req/s (0: a round with failed requests)"
  awk 'NR > 1 { for (i = 3; i <= 5; i++) { s[$2, i] += $i; n[$2, i]++ } }
       END {
         split("h1_plain h1_tls h2_tls", name, " ")
         for (i = 3; i <= 5; i++) {
           a = s["A", i] / n["A", i]; b = s["B", i] / n["B", i]
           printf "%s: A %.0f, B %.0f, B/A %.3f\n", name[i - 2], a, b, (a > 0 ? b / a : 0)
         }
       }' "$out/rounds.txt"
  echo "results: $out"
} | tee "$out/summary.txt"
