# Shell helpers shared by the bench scripts (sourced, not run): stopping helper processes by
# PID and waiting for a port. Each caller sets `me` to its name for the messages.

stop_pid() { # PID: SIGTERM, up to 10 s to exit, then SIGKILL
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

wait_port() { # ADDR PID: until ADDR accepts (10 s at most) while PID lives
  local host="${1%:*}" port="${1##*:}"
  for _ in $(seq 200); do
    kill -0 "$2" 2>/dev/null || { echo "${me:-bench}: process $2 exited early" >&2; return 1; }
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "${me:-bench}: nothing listens on $1 after 10 s" >&2
  return 1
}
