# Shell helpers shared by scripts/bench-peers.sh and scripts/soak.sh: ports on
# 127.0.0.1, the processes a script started (registered by pid, signalled only while
# their command line still matches, stopped newest first on exit, error or Ctrl-C), and
# waiting for a port or a log line.
#
# Source it after setting: log() (progress on stderr), KEEP (1 keeps the temp folder
# even on success) and KEPT_WHAT (what the temp folder holds, for the message). It sets
# TMP="" and OK=0: the script points TMP at its temp folder and sets OK=1 on success.
# shellcheck shell=bash

die() {
  log "error: $*"
  exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
# true if process $1's command line contains $2: the guard before every signal we send
cmdline_has() {
  local c
  c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $c == *"$2"* ]]
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# N free ports on 127.0.0.1, all different; each is checked again just before use.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
refuse_used() {
  local p
  for p in "$@"; do
    [[ $p =~ ^[0-9]+$ ]] || die "no free port found ('$p')"
    ! port_open "$p" || die "127.0.0.1:$p is already in use; not starting a broker on it"
  done
}

# ---------------------------------------------------------------- processes we started
# Parallel arrays: name, pid, a string the pid's command line must contain, seconds a
# SIGTERM may take before SIGKILL. Stopped in reverse order; only live, matching pids.
P_NAME=() P_PID=() P_MARK=() P_GRACE=()
register() {
  P_NAME+=("$1") P_PID+=("$2") P_MARK+=("$3") P_GRACE+=("$4")
}
stop_index() {
  local i=$1 pid=${P_PID[$1]} n
  [ -n "$pid" ] || return 0
  P_PID[i]=""
  alive "$pid" || return 0
  if ! cmdline_has "$pid" "${P_MARK[$i]}"; then
    sleep 0.5 # an exiting process has an empty command line
    alive "$pid" || return 0
    log "pid $pid is no longer ${P_NAME[$i]}; not signalling it"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((n = 0; n < ${P_GRACE[$i]} * 10; n++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "${P_NAME[$i]} (pid $pid) still running after ${P_GRACE[$i]} s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((n = 0; n < 50; n++)); do alive "$pid" || break; sleep 0.1; done
  fi
  log "stopped ${P_NAME[$i]} (pid $pid)"
}
# stops every registered process whose name starts with $1 (all if empty), newest first
stop_group() {
  local i
  for ((i = ${#P_PID[@]} - 1; i >= 0; i--)); do
    [[ ${P_NAME[$i]} == "$1"* ]] && stop_index "$i"
  done
  return 0
}
forget() { # a process we killed ourselves (kill -9 of the master)
  local i
  for i in "${!P_NAME[@]}"; do
    if [ "${P_NAME[$i]}" = "$1" ]; then P_PID[i]=""; fi
  done
}

# the pid registered under name $1 ("" once stopped)
pid_of() {
  local i
  for i in "${!P_NAME[@]}"; do
    if [ "${P_NAME[$i]}" = "$1" ]; then echo "${P_PID[$i]}"; fi
  done
}

TMP="" OK=0
cleanup() {
  set +e
  trap '' INT TERM
  if [[ " ${P_PID[*]} " =~ [0-9] ]]; then
    log "stopping what this script started"
    stop_group ""
  fi
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if [ "$OK" = 1 ] && [ "${KEEP:-0}" = 0 ]; then
      rm -rf "$TMP"
    else
      log "$KEPT_WHAT kept in $TMP"
    fi
  fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

# Starts "$@" in the background in its own session, stdin from /dev/null, output to $1's
# log. The child writes its own pid before it execs, so the pid is the program's even if
# setsid had to fork.  Usage: spawn LOGFILE PIDFILE WORKDIR cmd args...
spawn() {
  local logfile=$1 pidfile=$2 dir=$3
  shift 3
  rm -f "$pidfile"
  (
    cd "$dir"
    exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$logfile" 2>&1 </dev/null
  ) &
  local n
  for ((n = 0; n < 100; n++)); do
    [ -s "$pidfile" ] && break
    sleep 0.05
  done
  [ -s "$pidfile" ] || die "could not start $1"
  cat "$pidfile"
}

# Waits until 127.0.0.1:$1 accepts connections, while pid $2 lives; $3 = what, $4 = s.
wait_port() {
  local port=$1 pid=$2 what=$3 deadline=$(($(date +%s) + $4))
  until port_open "$port"; do
    alive "$pid" || die "$what exited during start-up"
    [ "$(date +%s)" -lt "$deadline" ] || die "$what did not open 127.0.0.1:$port within $4 s"
    sleep 0.1
  done
}

# Waits until file $1 contains the fixed string $2, while pid $3 lives; $4 = s.
wait_log() {
  local file=$1 text=$2 pid=$3 deadline=$(($(date +%s) + $4))
  until grep -qF -- "$text" "$file" 2>/dev/null; do
    alive "$pid" || die "the process writing $file exited before '$text'"
    [ "$(date +%s)" -lt "$deadline" ] || die "no '$text' in $file within $4 s"
    sleep 0.1
  done
}
