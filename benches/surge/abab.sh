#!/usr/bin/env bash
# No cost on ordinary traffic: levee's shipped admission defaults (the adaptive handshake
# limit, automatic caps on: no [admission] keys) against the protection off
# (`max_handshakes_in_flight = 1000000`, `auto = false`), in alternating rounds A B A B ...
# of the same run, on ordinary traffic only (no surge):
#   - full-handshake capacity: `levee bench surge --capacity --capacity-mode hello`, 64
#     closed-loop clients, ClientHello to levee's first flight (the server does the whole
#     handshake's key exchange and signature; the client no cryptography): handshakes/s;
#   - new connections end to end: `--capacity-mode full` (handshake + GET /; bounded by the
#     client's own handshakes on a small machine, but the same client in both arms);
#   - keep-alive requests: h2load (HTTP/1.1, 32 connections), when installed, on a second
#     TLS listener without PROXY protocol: req/s.
# levee (1 worker) on LEVEE_CPU, the tools and the demo backends on TOOL_CPU, access log on
# to a file. Prints each round and the B/A ratio of the arms' means (1.00 = no cost).
#
# Usage, from the repository root:  bash benches/surge/abab.sh
# Knobs: LEVEE_BIN (default: build target/release/levee), ROUNDS (pairs, 3), SECS (per
# measurement, 8), CERT (generated | rsa2048), LEVEE_CPU (0), TOOL_CPU (1), PORT_BASE (19600).
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
SECS="${SECS:-8}"
CERT="${CERT:-generated}"
LEVEE_CPU="${LEVEE_CPU:-0}"
TOOL_CPU="${TOOL_CPU:-1}"
PORT_BASE="${PORT_BASE:-19600}"
OFF="max_handshakes_in_flight = 1000000
auto = false"
for n in ROUNDS SECS PORT_BASE; do
  [[ "${!n}" =~ ^[0-9]+$ ]] || { echo "abab.sh: $n must be a whole number" >&2; exit 1; }
done
(( ROUNDS <= 10 && SECS <= 60 )) || { echo "abab.sh: at most 10 rounds of 60 s" >&2; exit 1; }
[[ "$CERT" == generated || "$CERT" == rsa2048 ]] || { echo "abab.sh: CERT must be generated or rsa2048" >&2; exit 1; }
command -v jq >/dev/null || { echo "abab.sh: jq is needed" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
me=abab.sh
# shellcheck source=../lib.sh
source "$root/benches/lib.sh"
if [ -z "${LEVEE_BIN:-}" ]; then
  (cd "$root" && cargo build --release)
  LEVEE_BIN="$root/target/release/levee"
fi
out="$root/target/surge-abab/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
work="$(mktemp -d)"
listen="127.0.0.1:$PORT_BASE"
plain="127.0.0.1:$((PORT_BASE + 1))"
admin="127.0.0.1:$((PORT_BASE + 2))"
backend="127.0.0.1:$((PORT_BASE + 3))"

backends_pid="" levee_pid=""
cleanup() { stop_pid "$levee_pid"; stop_pid "$backends_pid"; rm -rf "$work"; }
trap cleanup EXIT

taskset -c "$TOOL_CPU" "$LEVEE_BIN" bench backends --listen "$backend" --max-time 1h \
  >"$work/backends.log" 2>&1 &
backends_pid=$!
wait_port "$backend" "$backends_pid"

tls_block='[listeners.tls]'
if [ "$CERT" = rsa2048 ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
    -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
  tls_block="$(printf '[listeners.tls]\ncertificates = [{ cert = "%s", key = "%s" }]' \
    "$work/cert.pem" "$work/key.pem")"
fi

start_levee() { # ADMISSION_BLOCK
  {
    printf '[server]\nworkers = 1\naccess_log_path = "%s"\nshutdown_timeout = "2s"\n\n' "$work/access.log"
    printf '[admin]\nlisten = "%s"\n\n[admission]\n%s\n\n' "$admin" "$1"
    printf '[[listeners]]\nname = "proxied"\nlisten = "%s"\ndefault_pool = "demo"\n' "$listen"
    printf 'proxy_protocol = "v2"\ntrusted_proxies = ["127.0.0.1/32"]\n%s\n\n' "$tls_block"
    printf '[[listeners]]\nname = "direct"\nlisten = "%s"\ndefault_pool = "demo"\n%s\n\n' "$plain" "$tls_block"
    printf '[pools.demo]\n[[pools.demo.backends]]\naddress = "%s"\n' "$backend"
  } >"$work/levee.toml"
  "$LEVEE_BIN" check --config "$work/levee.toml" >/dev/null
  taskset -c "$LEVEE_CPU" "$LEVEE_BIN" run --config "$work/levee.toml" --log-level warn \
    >>"$out/levee.log" 2>&1 &
  levee_pid=$!
  wait_port "$listen" "$levee_pid"
  wait_port "$plain" "$levee_pid"
}

capacity() { # MODE JSON: closed-loop connections/s
  taskset -c "$TOOL_CPU" "$LEVEE_BIN" bench surge --target "$listen" --threads 1 --capacity \
    --capacity-mode "$1" --concurrency 64 --duration "${SECS}s" --json-out "$2" >/dev/null
  jq -r '.capacity.connections_per_s | floor' "$2"
}

keepalive() { # req/s of h2load over HTTP/1.1 keep-alive, or "-" without h2load
  command -v h2load >/dev/null || { echo "-"; return; }
  taskset -c "$TOOL_CPU" h2load --h1 -c 32 -D "$SECS" "https://localhost:${plain##*:}/" \
    --connect-to="$plain" 2>/dev/null | awk '/^finished in/ { gsub(",", ""); print int($4) }'
}

echo "round arm hello_per_s full_per_s keepalive_req_per_s" | tee "$out/rounds.txt"
for r in $(seq "$ROUNDS"); do
  for arm in A B; do
    if [ "$arm" = A ]; then start_levee "$OFF"; else start_levee ""; fi
    h="$(capacity hello "$out/hello-$r$arm.json")"
    f="$(capacity full "$out/full-$r$arm.json")"
    k="$(keepalive)"
    stop_pid "$levee_pid"
    levee_pid=""
    echo "$r $arm $h $f $k" | tee -a "$out/rounds.txt"
  done
done
{
  echo "A = protection off (max_handshakes_in_flight = 1000000, auto = false); B = shipped defaults"
  awk 'NR > 1 { for (i = 3; i <= 5; i++) if ($i != "-") { s[$2, i] += $i; n[$2, i]++ } }
       END {
         split("hello_per_s full_per_s keepalive_req_per_s", name, " ")
         for (i = 3; i <= 5; i++) {
           if (!n["A", i] || !n["B", i]) { printf "%s: not measured\n", name[i - 2]; continue }
           a = s["A", i] / n["A", i]; b = s["B", i] / n["B", i]
           printf "%s: A %.0f, B %.0f, B/A %.3f\n", name[i - 2], a, b, b / a
         }
       }' "$out/rounds.txt"
  echo "results: $out"
} | tee "$out/summary.txt"
