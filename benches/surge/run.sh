#!/usr/bin/env bash
# Surge benchmark: does admission control keep other countries served while one country
# floods levee with new TLS connections at SURGE_FACTOR x levee's full-handshake capacity?
#
# Everything runs on this machine over loopback. levee (1 worker) is pinned to LEVEE_CPU;
# the load tool (`levee bench surge --threads 1`) and the demo backends (`levee bench
# backends`, hidden subcommand) are pinned to TOOL_CPU. The capacity run and the surge use
# hello-mode connections (`--capacity-mode hello`, `--surge-mode hello`): PROXY header and a
# pre-built TLS 1.3 ClientHello, read until levee's first flight (by then levee has done a full
# handshake's key exchange and signature), reset. The client does no cryptography, so it can
# offer far more than levee's capacity from one core; levee counts these handshakes as failed.
# The baseline countries always make full connections (handshake + GET /) and keep-alive
# requests.
#
# Surge runs use TWO tool processes on TOOL_CPU, started together with the same --duration and
# --surge-after (so the baseline's measurement window is the surge window): the surge
# generator (`--no-baseline`, SCHED_IDLE via `chrt -i 0`, JSON to NAME-surge.json) and the
# baseline clients (`--surge-rate 0`, `nice -n -5`, JSON to NAME.json). In one process the surge saturated the
# tool's core and the baseline latencies (client lag up to 700 ms) measured the client, not
# levee; with CFS priorities the baseline's few full connections run first and the surge gets
# the rest of the core (its shortfall shows as the achieved offered rate in the summary).
# The generator runs as SCHED_IDLE rather than merely niced: under EEVDF a woken nice 0 task
# (a backend, the baseline client) may wait for a niced task's slice to run out (~3 ms, on
# each hop of a request through this core), which showed as a keep-alive p99 of 5-7 ms
# measured by the client, not by levee; any other task preempts a SCHED_IDLE one at once.
# No-surge runs are one process (baseline clients only), as before. Steps:
#   1. capacity: closed-loop hello connections (levee's full-handshake capacity, server
#      side), admission off (ADMISSION_OFF: no handshake limit to speak of, auto = false);
#   2. no surge, admission off;
#   3. surge at SURGE_FACTOR x capacity, admission off (the contrast);
#   4. no surge, admission on (ADMISSION_ON, empty: levee's shipped defaults);
#   5. surge at SURGE_FACTOR x capacity, admission on (the target run);
#   6-7. with CONTROL=1 (the default): the same flood at levee (shipped defaults) while the
#      baseline clients measure a second levee on TOOL_CPU that no flood reaches, no surge
#      and surge: what the flood costs this machine, apart from levee;
#   8-9. with PEER=haproxy (the default when haproxy is installed): HAProxy in levee's place
#      (one thread pinned to LEVEE_CPU, same certificate, backends, PROXY v2 and backlog,
#      its log on to a file), no surge and the same surge: the peer beside levee, same run.
# Target: in run 5, the baseline countries pooled ("others": more samples than one country's,
# so a steadier p99) keep >= 99% success and a p99 within 2x of their run-4 p99. JSON results and the summary go to target/surge/<timestamp>/.
#
# Usage, from the repository root:  bash benches/surge/run.sh
# Knobs (environment): LEVEE_BIN (default: build and use target/release/levee), DURATION
# (seconds per open-loop run, 30), CAP_DURATION (10), SURGE_AFTER (5), SURGE_FACTOR (3),
# SURGE_COUNTRY (BR), BASELINE (DE,JP,US,FR), BASELINE_RATE (10), KEEPALIVE_CLIENTS (2),
# KEEPALIVE_RATE (10), CONCURRENCY (64), CERT (generated | rsa2048 | rsa4096), BACKEND (demo |
# python), SURGE_WAIT (2s), LEVEE_CPU (0), TOOL_CPU (1), PORT_BASE (19400:
# listener PORT_BASE, admin +1, backends +2..+4), ADMISSION_ON / ADMISSION_OFF (the [admission] blocks),
# CAPACITY (conn/s: skip step 1), CAPACITY_FROM (measured, the default; cpu: when levee used
# < 90% of its core in step 1, extrapolate the capacity to 100% of the core), CAPACITY_MODE
# and SURGE_MODE (hello, the default, or full: full handshake + GET /, client-bound on a
# small machine).
#
# Limits: the tool and levee share a 2-core machine; the tool's core also runs the backends
# and the baseline's full handshakes, so the offered surge may still fall short of
# SURGE_FACTOR x capacity: the summary prints, per run, the client lag (starts behind
# schedule) of each tool process, the surge's achieved offered rate next to its target, and
# levee's CPU share, to show who was the limit. The two processes start within a few ms of
# each other (each clock starts after its own set-up), so the windows line up to about that.
set -euo pipefail

# The [admission] block of the "admission on" runs: empty, levee's shipped defaults (the
# adaptive handshake limit, automatic caps on).
ADMISSION_ON="${ADMISSION_ON:-}"
# The [admission] block of the "admission off" runs: no handshake limit to speak of, no
# automatic caps (what levee did before the adaptive limit).
ADMISSION_OFF="${ADMISSION_OFF:-max_handshakes_in_flight = 1000000
auto = false}"

# levee's listen backlog (the kernel caps it at net.core.somaxconn).
BACKLOG="${BACKLOG:-4096}"
DURATION="${DURATION:-30}"
CAP_DURATION="${CAP_DURATION:-10}"
SURGE_AFTER="${SURGE_AFTER:-5}"
SURGE_FACTOR="${SURGE_FACTOR:-3}"
SURGE_COUNTRY="${SURGE_COUNTRY:-BR}"
BASELINE="${BASELINE:-DE,JP,US,FR}"
BASELINE_RATE="${BASELINE_RATE:-10}"
KEEPALIVE_CLIENTS="${KEEPALIVE_CLIENTS:-2}"
KEEPALIVE_RATE="${KEEPALIVE_RATE:-10}"
CONCURRENCY="${CONCURRENCY:-64}"
LEVEE_CPU="${LEVEE_CPU:-0}"
TOOL_CPU="${TOOL_CPU:-1}"
PORT_BASE="${PORT_BASE:-19400}"
CAPACITY_MODE="${CAPACITY_MODE:-hello}"
SURGE_MODE="${SURGE_MODE:-hello}"
# The surge generator's scheduling on TOOL_CPU: idle (SCHED_IDLE, the default) or a niceness.
SURGE_SCHED="${SURGE_SCHED:-idle}"
# levee's certificate: generated (levee's own self-signed ECDSA P-256, the default), rsa2048
# or rsa4096 (made here with openssl: an RSA-2048 signature costs levee about 10x an ECDSA
# one, RSA-4096 about 60x, so its capacity is lower and 3x or 5x of it is within what one
# client core can offer).
CERT="${CERT:-generated}"
# The demo backends (demo: levee's own, one write per response) or python (Python's
# http.server, which sends the response head and the body in two writes, HTTP/1.0, a
# connection per request).
BACKEND="${BACKEND:-demo}"
# How long a surge connection waits for levee's first flight before it resets (open-loop
# floods that hold their connections).
SURGE_WAIT="${SURGE_WAIT:-2s}"
# The control runs (1, the default; 0: none): the flood at levee, the baseline at a second levee
# on TOOL_CPU that no flood reaches (what the flood costs the machine itself).
CONTROL="${CONTROL:-1}"
# The peer run beside levee in the same run: haproxy (when installed) or none.
if command -v haproxy >/dev/null; then PEER="${PEER:-haproxy}"; else PEER="${PEER:-none}"; fi

for n in DURATION CAP_DURATION SURGE_AFTER BASELINE_RATE KEEPALIVE_CLIENTS KEEPALIVE_RATE \
  CONCURRENCY PORT_BASE; do
  [[ "${!n}" =~ ^[0-9]+$ ]] || { echo "run.sh: $n must be a whole number" >&2; exit 1; }
done
(( DURATION <= 600 && CAP_DURATION <= 600 )) || { echo "run.sh: at most 600 s a run" >&2; exit 1; }
[[ "${CAPACITY:-0}" =~ ^[0-9]+$ && "$SURGE_FACTOR" =~ ^[0-9]+$ ]] ||
  { echo "run.sh: CAPACITY and SURGE_FACTOR must be whole numbers" >&2; exit 1; }
(( SURGE_AFTER < DURATION )) || { echo "run.sh: SURGE_AFTER must be below DURATION" >&2; exit 1; }
[[ "$CERT" == generated || "$CERT" == rsa2048 || "$CERT" == rsa4096 ]] ||
  { echo "run.sh: CERT must be generated, rsa2048 or rsa4096" >&2; exit 1; }
[[ "$BACKEND" == demo || "$BACKEND" == python ]] || { echo "run.sh: BACKEND must be demo or python" >&2; exit 1; }
[[ "$CONTROL" == 0 || "$CONTROL" == 1 ]] || { echo "run.sh: CONTROL must be 0 or 1" >&2; exit 1; }
[[ "$PEER" == haproxy || "$PEER" == none ]] || { echo "run.sh: PEER must be haproxy or none" >&2; exit 1; }
[[ "$PEER" == none ]] || command -v haproxy >/dev/null || { echo "run.sh: PEER=haproxy needs haproxy" >&2; exit 1; }
for n in CAPACITY_MODE SURGE_MODE; do
  [[ "${!n}" == hello || "${!n}" == full ]] || { echo "run.sh: $n must be hello or full" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "run.sh: jq is needed for the summary" >&2; exit 1; }
command -v taskset >/dev/null || { echo "run.sh: taskset is needed (util-linux)" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
me=run.sh
# shellcheck source=../lib.sh
source "$root/benches/lib.sh"
if [ -z "${LEVEE_BIN:-}" ]; then
  (cd "$root" && cargo build --release)
  LEVEE_BIN="$root/target/release/levee"
fi
[ -x "$LEVEE_BIN" ] || { echo "run.sh: $LEVEE_BIN is not executable" >&2; exit 1; }

out="$root/target/surge/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
work="$(mktemp -d)"
listen="127.0.0.1:$PORT_BASE"
admin="127.0.0.1:$((PORT_BASE + 1))"
control_listen="127.0.0.1:$((PORT_BASE + 5))"
control_admin="127.0.0.1:$((PORT_BASE + 6))"
backends=("127.0.0.1:$((PORT_BASE + 2))" "127.0.0.1:$((PORT_BASE + 3))" "127.0.0.1:$((PORT_BASE + 4))")

backends_pid=""
python_pids=()
levee_pid=""
surge_pid=""
control_pid=""
# Where the baseline clients connect: levee, or the control levee in the control runs.
baseline_target=""
# The server under test of the current run (its PID is levee_pid): levee or haproxy.
server=levee
cleanup() {
  stop_pid "$surge_pid"
  stop_pid "$levee_pid"
  stop_pid "$control_pid"
  stop_pid "$backends_pid"
  for p in "${python_pids[@]}"; do stop_pid "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT


backend_args=()
for b in "${backends[@]}"; do backend_args+=(--listen "$b"); done
if [ "$BACKEND" = python ]; then
  command -v python3 >/dev/null || { echo "run.sh: BACKEND=python needs python3" >&2; exit 1; }
  mkdir -p "$work/www" && echo "hello from python" >"$work/www/index.html"
  # One http.server per address, each stopped by its PID.
  for b in "${backends[@]}"; do
    taskset -c "$TOOL_CPU" python3 -m http.server --bind 127.0.0.1 --directory "$work/www" \
      "${b##*:}" >>"$work/backends.log" 2>&1 &
    python_pids+=("$!")
  done
else
  taskset -c "$TOOL_CPU" "$LEVEE_BIN" bench backends "${backend_args[@]}" --max-time 1h \
    >"$work/backends.log" 2>&1 &
  backends_pid=$!
fi
if [ "$BACKEND" = python ]; then
  for i in "${!backends[@]}"; do wait_port "${backends[$i]}" "${python_pids[$i]}"; done
else
  wait_port "${backends[0]}" "$backends_pid"
fi

tls_block='[listeners.tls]'
if [ "$CERT" != generated ] || [ "$PEER" != none ]; then
  command -v openssl >/dev/null || { echo "run.sh: CERT=$CERT (or a PEER) needs openssl" >&2; exit 1; }
  # CERT=generated with a peer: the peer gets an ECDSA P-256 key like levee's generated one.
  if [ "$CERT" = generated ]; then key_spec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
  else key_spec=(-newkey "rsa:${CERT#rsa}"); fi
  openssl req -x509 "${key_spec[@]}" -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
    -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
  cat "$work/cert.pem" "$work/key.pem" >"$work/peer.pem"
  if [ "$CERT" != generated ]; then
    tls_block="$(printf '[listeners.tls]\ncertificates = [{ cert = "%s", key = "%s" }]' \
      "$work/cert.pem" "$work/key.pem")"
  fi
fi

levee_config() { # ADMISSION_BLOCK LISTEN ADMIN LOG: a levee config on stdout
  # The access log on, as shipped, to a file (not the console log).
  printf '[server]\nworkers = 1\naccess_log_path = "%s"\nshutdown_timeout = "2s"\nbacklog = %s\n\n' \
    "$4" "$BACKLOG"
  printf '[admin]\nlisten = "%s"\n\n' "$3"
  printf '[admission]\n%s\n\n' "$1"
  printf '[[listeners]]\nname = "surge"\nlisten = "%s"\ndefault_pool = "demo"\n' "$2"
  printf 'proxy_protocol = "v2"\ntrusted_proxies = ["127.0.0.1/32"]\n%s\n\n' "$tls_block"
  printf '[pools.demo]\nalgorithm = "round_robin"\n'
  for b in "${backends[@]}"; do printf '[[pools.demo.backends]]\naddress = "%s"\n' "$b"; done
}

start_levee() { # ADMISSION_BLOCK: writes the config and starts levee pinned to LEVEE_CPU
  levee_config "$1" "$listen" "$admin" "$work/access.log" >"$work/levee.toml"
  "$LEVEE_BIN" check --config "$work/levee.toml" >/dev/null
  taskset -c "$LEVEE_CPU" "$LEVEE_BIN" run --config "$work/levee.toml" --log-level warn \
    >>"$out/levee.log" 2>&1 &
  levee_pid=$!
  wait_port "$listen" "$levee_pid"
}

start_control() { # the control levee (shipped defaults) on TOOL_CPU: no flood reaches it
  levee_config "" "$control_listen" "$control_admin" "$work/control-access.log" >"$work/control.toml"
  taskset -c "$TOOL_CPU" "$LEVEE_BIN" run --config "$work/control.toml" --log-level warn \
    >>"$out/control.log" 2>&1 &
  control_pid=$!
  wait_port "$control_listen" "$control_pid"
}

start_haproxy() { # HAProxy in levee's place: one thread on LEVEE_CPU, the same listener
  # (PROXY v2, TLS, backlog), backends and a log to a file; its PID in levee_pid
  {
    printf 'global\n    nbthread 1\n    maxconn 9000\n    ssl-default-bind-options ssl-min-ver TLSv1.2\n'
    printf '    pidfile %s/haproxy.pid\n\n' "$work"
    printf 'defaults\n    mode http\n    log stdout format raw local0\n    option httplog\n'
    printf '    option http-keep-alive\n    http-reuse safe\n    timeout connect 5s\n'
    printf '    timeout client 30s\n    timeout server 30s\n    timeout http-request 10s\n'
    printf '    timeout http-keep-alive 30s\n\n'
    printf 'frontend surge\n    bind %s accept-proxy ssl crt %s alpn h2,http/1.1 backlog %s\n' \
      "$listen" "$work/peer.pem" "$BACKLOG"
    printf '    default_backend demo\n\nbackend demo\n    balance roundrobin\n'
    for i in "${!backends[@]}"; do printf '    server b%s %s\n' "$i" "${backends[$i]}"; done
  } >"$work/haproxy.cfg"
  haproxy -c -q -f "$work/haproxy.cfg"
  taskset -c "$LEVEE_CPU" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy-access.log" 2>>"$out/haproxy.log" &
  levee_pid=$!
  wait_port "$listen" "$levee_pid"
}

stop_levee() {
  curl -fsS "http://$admin/stats" >"$out/stats-$1.json" 2>/dev/null || true
  # Per-country rejection reasons (levee_admission_rejected_total) are in /metrics only.
  curl -fsS "http://$admin/metrics" >"$out/metrics-$1.txt" 2>/dev/null || true
  stop_pid "$levee_pid"
  levee_pid=""
}

cpu_ticks() { # PID: user + system CPU time so far, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

listen_overflows() { # the kernel's accept-queue overflows so far (machine-wide), or 0
  awk '$1 == "TcpExt:" && !n { for (i = 1; i <= NF; i++) col[$i] = i; n = 1; next }
       $1 == "TcpExt:" && n { print $col["ListenOverflows"] + 0; exit }' /proc/net/netstat \
    2>/dev/null || echo 0
}

baseline_args=(--baseline "$BASELINE" --baseline-rate "$BASELINE_RATE"
  --keepalive-clients "$KEEPALIVE_CLIENTS" --keepalive-rate "$KEEPALIVE_RATE")

tool() { # NICE JSON ARGS...: one tool process pinned to TOOL_CPU at niceness NICE (idle: the
         # SCHED_IDLE policy), JSON to JSON, connecting to $target (default: levee)
  local n="$1" json="$2" sched
  shift 2
  if [ "$n" = idle ]; then sched=(chrt -i 0); else sched=(nice -n "$n"); fi
  taskset -c "$TOOL_CPU" "${sched[@]}" "$LEVEE_BIN" bench surge --target "${target:-$listen}" --threads 1 \
    --surge-country "$SURGE_COUNTRY" --json-out "$json" "$@"
}

steal_ticks() { # time the hypervisor took from LEVEE_CPU so far, in clock ticks
  awk -v cpu="cpu$LEVEE_CPU" '$1 == cpu { print $9 + 0 }' /proc/stat
}

run_begin() { # NAME: notes levee's CPU time, the clock and the overflow counter
  echo "== $1"
  st0="$(steal_ticks)"
  o0="$(listen_overflows)"
  t0="$(cpu_ticks "$levee_pid")"
  s0="$(date +%s%N)"
}

run_end() { # NAME: levee's CPU use over the run (% of one core) to $out/NAME.cpu, overflows
  local name="$1" t1 s1
  t1="$(cpu_ticks "$levee_pid")"
  s1="$(date +%s%N)"
  echo "$(( (t1 - t0) * 100 * 1000000000 / ($(getconf CLK_TCK) * (s1 - s0)) ))" >"$out/$name.cpu"
  echo "$server CPU: $(cat "$out/$name.cpu")% of one core (whole run: warm-up and drain included)"
  # SYNs the kernel dropped because levee's accept queue was full: clients retry after 1 s,
  # before levee (and its admission control) sees them. Machine-wide counter.
  echo "$(( $(listen_overflows) - o0 ))" >"$out/$name.overflows"
  echo "accept-queue overflows (kernel, machine-wide): $(cat "$out/$name.overflows")"
  # A shared virtual machine: time its host took from levee's core (stalls no one here caused).
  echo "$(( ($(steal_ticks) - st0) * 1000 / $(getconf CLK_TCK) ))" >"$out/$name.steal_ms"
  echo "steal on levee's core: $(cat "$out/$name.steal_ms") ms"
}

surge() { # NAME ARGS...: one tool process (baseline clients; or the capacity run), JSON to
          # $out/NAME.json
  local name="$1"
  shift
  run_begin "$name"
  target="$baseline_target" tool 0 "$out/$name.json" "${baseline_args[@]}" "$@" | tee "$out/$name.txt"
  run_end "$name"
}

split_surge() { # NAME RATE: the surge generator (SURGE_SCHED, background, $out/NAME-surge.json)
                # and the baseline clients (nice -5, foreground, $out/NAME.json), same timing
  local name="$1" rate="$2" rc=0
  run_begin "$name"
  tool "$SURGE_SCHED" "$out/$name-surge.json" "${open_loop[@]}" "${surge_only[@]}" --no-baseline --surge-rate "$rate" \
    >"$out/$name-surge.txt" 2>&1 &
  surge_pid=$!
  target="$baseline_target" tool -5 "$out/$name.json" "${baseline_args[@]}" "${open_loop[@]}" --surge-rate 0 |
    tee "$out/$name.txt"
  wait "$surge_pid" || rc=$?
  surge_pid=""
  echo "-- surge generator ($name-surge):"
  cat "$out/$name-surge.txt"
  (( rc == 0 )) || { echo "run.sh: the surge generator of $name exited with $rc" >&2; exit 1; }
  run_end "$name"
}

open_loop=(--duration "${DURATION}s" --surge-after "${SURGE_AFTER}s" --surge-mode "$SURGE_MODE")
surge_only=(--timeout "$SURGE_WAIT")

start_levee "$ADMISSION_OFF"
if [ -n "${CAPACITY:-}" ]; then
  capacity="$CAPACITY" measured="given" levee_busy="-"
else
  surge capacity --capacity --capacity-mode "$CAPACITY_MODE" --duration "${CAP_DURATION}s" \
    --concurrency "$CONCURRENCY"
  measured="$(jq -r '.capacity.connections_per_s | floor' "$out/capacity.json")"
  levee_busy="$(cat "$out/capacity.cpu")"
  # levee well below one full core means something else was the limit (the client: its own
  # handshakes with CAPACITY_MODE=full; or other load on the machine). CAPACITY_FROM=cpu extrapolates to 100% of the
  # core (handshakes are CPU-bound, about linear); meaningful on an otherwise idle machine.
  capacity="$measured"
  if (( levee_busy > 0 && levee_busy < 90 )); then
    if [ "${CAPACITY_FROM:-measured}" = cpu ]; then
      capacity="$(( measured * 100 / levee_busy ))"
    fi
    echo "warning: levee used ${levee_busy}% of its core in the capacity run: it was not" \
      "the limit; capacity used: ${capacity} conn/s (CAPACITY_FROM=cpu extrapolates, CAPACITY=N sets it)"
  fi
fi
surge_rate="$(( capacity * SURGE_FACTOR ))"
echo "capacity ${capacity} conn/s ($CAPACITY_MODE; measured ${measured}, levee CPU ${levee_busy}%) -> surge ${surge_rate} conn/s ($SURGE_MODE) from $SURGE_COUNTRY"
surge nosurge-off "${open_loop[@]}" --surge-rate 0
split_surge surge-off "$surge_rate"
stop_levee off

start_levee "$ADMISSION_ON"
surge nosurge-on "${open_loop[@]}" --surge-rate 0
split_surge surge-on "$surge_rate"
stop_levee on

runs=(nosurge-off surge-off nosurge-on surge-on)
if [ "$CONTROL" = 1 ]; then
  # The control: the same flood at levee (shipped defaults), while the baseline clients
  # measure a second levee on TOOL_CPU that no flood reaches. What their p99 gains there is
  # what the flood costs this machine (the kernel's loopback work, the generator's core),
  # not what levee's admission lets through.
  start_levee "$ADMISSION_ON"
  start_control
  baseline_target="$control_listen"
  surge nosurge-control "${open_loop[@]}" --surge-rate 0
  split_surge surge-control "$surge_rate"
  baseline_target=""
  stop_pid "$control_pid"
  control_pid=""
  stop_levee control
  runs+=(nosurge-control surge-control)
fi
if [ "$PEER" = haproxy ]; then
  start_haproxy
  server=haproxy
  surge nosurge-haproxy "${open_loop[@]}" --surge-rate 0
  split_surge surge-haproxy "$surge_rate"
  stop_pid "$levee_pid"
  levee_pid=""
  runs+=(nosurge-haproxy surge-haproxy)
fi

# Summary: per baseline country, success and p99 of each run; ratios to the no-surge p99
# of the same admission; PASS when the admission-on surge run meets the target.
{
  echo
  echo "capacity: $capacity new connections/s (1 worker; $CAPACITY_MODE mode; measured $measured with levee at ${levee_busy}% of one core); surge: $surge_rate/s from $SURGE_COUNTRY ($SURGE_MODE mode)"
  echo "window: ${SURGE_AFTER}s..${DURATION}s of each run; 'new' = new connections, 'ka' = keep-alive requests"
  echo "surge runs: baseline figures from NAME.json (baseline process), the surge's from NAME-surge.json (surge generator)"
  for run in "${runs[@]}"; do
    # The surge generator's JSON exists for the surge runs only (/dev/null: none, $s null).
    sfile="$out/$run-surge.json"
    [ -f "$sfile" ] || sfile=/dev/null
    jq -rn --arg run "$run" --arg cpu "$(cat "$out/$run.cpu")" --arg ovf "$(cat "$out/$run.overflows")" \
      --arg steal "$(cat "$out/$run.steal_ms")" \
      --slurpfile bf "$out/$run.json" --slurpfile sf "$sfile" '
      $bf[0] as $b | $sf[0] as $s
      | def lag(r): "\(r.client_lag.late_starts) late starts, max \(r.client_lag.max_lag_ms) ms";
      "\($run): server CPU \($cpu)%; steal \($steal) ms; accept-queue overflows \($ovf); baseline client lag \(lag($b)); " +
      (if $s == null then "no surge"
       else
         ([$s.countries[] | select(.role == "surge")][0].new_connections) as $n
         | ($s.duration_s - $s.window_from_s) as $window
         # Arrivals count by their scheduled time, so attempts / window is the target rate
         # whatever the lag; sent (not skipped) over the time the starts really took is the
         # rate offered.
         | (([$s.duration_s, $s.client_lag.last_start_s] | max) - $s.window_from_s) as $span
         | ($n.attempts - $n.errors.skipped) as $sent
         | "surge \($s.surge_country) (\($s.surge_mode)): \($n.ok)/\($n.attempts) ok, p99 \($n.p99_ms) ms; " +
           "offered \($sent / $span | floor)/s achieved vs \($s.surge_rate)/s target " +
           "(\($n.attempts / $window | floor)/s = attempts / \($window) s window; \($sent) sent by " +
           "\($s.client_lag.last_start_s * 10 | round / 10) s); surge client lag \(lag($s))"
       end)'
  done
  printf '%-8s %-12s %9s %10s %10s %9s %9s\n' country run success new_p99_ms ka_p99_ms new_x ka_x
  # Each run's p99 against the no-surge run of the same server and admission (the run
  # before it in the list: nosurge-X, surge-X pairs).
  files=()
  for run in "${runs[@]}"; do files+=("$out/$run.json"); done
  jq -rs '
    $ARGS.positional as $names
    | [range(0; length) as $i
       | (.[$i - ($i % 2)].countries | map({key: .country, value: .}) | from_entries) as $ref
       | .[$i].countries[] | select(.role == "baseline")
       | {c: .country, run: $names[$i], s: .all.success_rate,
          n: .new_connections.p99_ms, k: .keepalive.p99_ms,
          rn: $ref[.country].new_connections.p99_ms, rk: $ref[.country].keepalive.p99_ms}]
    | sort_by(.c)[]
    | def ratio(a; b): if b > 0 then (a / b * 100 | round / 100) else 0 end;
      "\(.c) \(.run) \(.s * 10000 | round / 100) \(.n) \(.k) \(ratio(.n; .rn)) \(ratio(.k; .rk))"' \
    "${files[@]}" --args "${runs[@]}" |
    while read -r c run s n k rn rk; do
      printf '%-8s %-12s %8s%% %10s %10s %9s %9s\n' "$c" "$run" "$s" "$n" "$k" "$rn" "$rk"
    done
  verdict() { # NOSURGE SURGE: PASS when the others (the baseline countries pooled) of SURGE
               # meet the target against NOSURGE
    jq -rs '
      .[0].others as $ref | .[1].others as $o
      | if $o.all.success_rate >= 0.99
           and $o.new_connections.p99_ms <= 2 * $ref.new_connections.p99_ms
           and $o.keepalive.p99_ms <= 2 * $ref.keepalive.p99_ms
        then "PASS" else "FAIL" end' "$out/$1.json" "$out/$2.json"
  }
  # The others pooled, per run: the figures the verdict reads.
  printf '%-16s %9s %10s %10s %9s %9s\n' others-pooled success new_p99_ms ka_p99_ms new_x ka_x
  jq -rs '
    $ARGS.positional as $names
    | range(0; length) as $i | .[$i - ($i % 2)].others as $ref | .[$i].others as $o
    | def ratio(a; b): if b > 0 then (a / b * 100 | round / 100) else 0 end;
      "\($names[$i]) \($o.all.success_rate * 10000 | round / 100) \($o.new_connections.p99_ms) \($o.keepalive.p99_ms) \(ratio($o.new_connections.p99_ms; $ref.new_connections.p99_ms)) \(ratio($o.keepalive.p99_ms; $ref.keepalive.p99_ms))"' \
    "${files[@]}" --args "${runs[@]}" |
    while read -r run s n k rn rk; do
      printf '%-16s %8s%% %10s %10s %9s %9s\n' "$run" "$s" "$n" "$k" "$rn" "$rk"
    done
  # Onset to flagged spike: the spike's `since` in levee's /stats (read right after the run)
  # against the surge generator's onset (its start + the window start), both wall clocks.
  onset_ms="$(jq -rn --slurpfile st "$out/stats-on.json" --slurpfile sg "$out/surge-on-surge.json" --arg c "$SURGE_COUNTRY" '
    ([$st[0].spikes[] | select(.country == $c)][0].since) as $since
    | if $since == null then "never (no spike in /stats)"
      else "\(($since - $sg[0].started_unix_s - $sg[0].window_from_s) * 1000 | round) ms" end')"
  echo "onset to flagged spike ($SURGE_COUNTRY, shipped defaults): $onset_ms (target <= 1000 ms)"
  echo "target (shipped defaults: the others pooled, success >= 99%, p99 <= 2x no-surge p99): $(verdict nosurge-on surge-on)"
  if [ "$PEER" = haproxy ]; then
    echo "haproxy beside, same target against its own no-surge run: $(verdict nosurge-haproxy surge-haproxy)"
  fi
  echo "results: $out"
} | tee "$out/summary.txt"
