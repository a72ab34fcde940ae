#!/usr/bin/env bash
# Start the zyra-orchestrator API (the dev container's command and its postStartCommand).
#
#   scripts/start-api.sh               foreground: exec the server (`python -m api`)
#   scripts/start-api.sh --background  start it detached, wait for GET /healthz, print URL and log
#   scripts/start-api.sh --stop        stop the server --background started
#
# Settings are the service's own ZYRA_* variables (api/settings.py): ZYRA_HOST (0.0.0.0 in a
# container), ZYRA_PORT, ZYRA_DATA_DIR, ZYRA_API_KEYS, ... Only this script reads:
#   ZYRA_RELOAD=true       uvicorn --reload, watching api/ and runner/ (source bind-mounted)
#   ZYRA_API_LOG           --background log (default ${ZYRA_DATA_DIR:-/tmp/zyra-orchestrator}/api.log)
#   ZYRA_API_PID_FILE      --background pid file (default: api.pid beside the log)
#   ZYRA_START_TIMEOUT_S   how long --background waits for /healthz (default 60)
#   PYTHON                 the interpreter (default `python`: the dev image's venv is on PATH)
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

PYTHON="${PYTHON:-python}"
export ZYRA_HOST="${ZYRA_HOST:-127.0.0.1}"
export ZYRA_PORT="${ZYRA_PORT:-8000}"
DATA_DIR="${ZYRA_DATA_DIR:-/tmp/zyra-orchestrator}"
LOG="${ZYRA_API_LOG:-$DATA_DIR/api.log}"
PID_FILE="${ZYRA_API_PID_FILE:-$(dirname "$LOG")/api.pid}"
TIMEOUT_S="${ZYRA_START_TIMEOUT_S:-60}"
[[ "$TIMEOUT_S" =~ ^[0-9]+$ ]] || { echo "ZYRA_START_TIMEOUT_S must be whole seconds" >&2; exit 2; }

# Where this machine reaches the server: a wildcard address is reached on loopback.
case "$ZYRA_HOST" in
  0.0.0.0 | "") probe_host=127.0.0.1 ;;
  :: | "[::]") probe_host="[::1]" ;;
  *:*) probe_host="[$ZYRA_HOST]" ;;
  *) probe_host="$ZYRA_HOST" ;;
esac
URL="http://$probe_host:$ZYRA_PORT"

usage() { sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
say() { printf 'start-api: %s\n' "$*"; }

serve() {
  if [[ "${ZYRA_RELOAD:-false}" == true ]]; then
    exec "$PYTHON" -m uvicorn --factory api.server:create_app --reload \
      --reload-dir api --reload-dir runner --host "$ZYRA_HOST" --port "$ZYRA_PORT"
  fi
  exec "$PYTHON" -m api
}

healthy() {
  "$PYTHON" - "$URL/healthz" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as reply:
    sys.exit(0 if reply.status == 200 else 1)
PY
}

# Alive and not a zombie (a container whose PID 1 does not reap keeps those around).
alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  [[ -r "/proc/$1/stat" ]] || return 0
  stat="$(<"/proc/$1/stat")" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

# The pid file names a live process that is this server (not a recycled pid).
running_pid() {
  local pid cmdline
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(<"$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    [[ "$cmdline" == *" -m api"* || "$cmdline" == *"api.server:create_app"* ]] || return 1
  fi
  printf '%s\n' "$pid"
}

tail_log() {
  say "last lines of $LOG:"
  tail -n 40 "$LOG" 2>/dev/null | sed 's/^/    /' || true
}

# SIGTERM to the server: uvicorn shuts down gracefully (the app stops its own children, the
# reloader its worker). After 20 s, SIGKILL to its process group (setsid made it the
# leader), so nothing it started is left behind.
terminate() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid" && ((waited < 200)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if alive "$pid"; then
    say "pid $pid ignored SIGTERM for 20 s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    say "not running"
    return 0
  fi
  terminate "$pid"
  say "stopped pid $pid"
}

background() {
  local pid deadline
  if pid="$(running_pid)"; then
    say "already running (pid $pid)"
  elif healthy; then
    # e.g. the container's own command already serves on this port
    say "an API already answers on $URL; not starting another"
    return 0
  else
    mkdir -p "$(dirname "$LOG")" "$(dirname "$PID_FILE")"
    rm -f "$PID_FILE"
    local detach=(nohup)
    command -v setsid >/dev/null && detach=(setsid nohup)
    # The child writes its own pid (it then execs the server, keeping that pid).
    ZYRA_API_WRITE_PID="$PID_FILE" "${detach[@]}" bash "${BASH_SOURCE[0]}" --foreground \
      >>"$LOG" 2>&1 </dev/null &
    deadline=$((SECONDS + 10))
    while [[ ! -s "$PID_FILE" ]] && ((SECONDS < deadline)); do sleep 0.05; done
    pid="$(<"$PID_FILE")" || { say "the server did not start"; tail_log; return 1; }
    say "started pid $pid, log $LOG"
  fi
  deadline=$((SECONDS + TIMEOUT_S))
  until healthy; do
    if ! alive "$pid"; then
      say "the server exited before answering $URL/healthz"
      rm -f "$PID_FILE"
      tail_log
      return 1
    fi
    if ((SECONDS >= deadline)); then
      say "no answer from $URL/healthz within ${TIMEOUT_S}s; stopping pid $pid"
      terminate "$pid"
      tail_log
      return 1
    fi
    sleep 0.25
  done
  say "zyra-orchestrator API on $URL (log: $LOG, pid $pid)"
}

case "${1:---foreground}" in
  --foreground)
    if [[ -n "${ZYRA_API_WRITE_PID:-}" ]]; then
      printf '%s\n' "$$" >"$ZYRA_API_WRITE_PID.tmp"
      mv -f "$ZYRA_API_WRITE_PID.tmp" "$ZYRA_API_WRITE_PID"
      unset ZYRA_API_WRITE_PID
    fi
    serve
    ;;
  --background) background ;;
  --stop) stop ;;
  -h | --help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
