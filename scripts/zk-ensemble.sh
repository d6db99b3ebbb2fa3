#!/usr/bin/env bash
# A three-server ZooKeeper ensemble on this machine, for configs/zk/ (clients on
# 127.0.0.1:2181, 2182 and 2183; quorum ports 2888x and 3888x). Uses Debian's
# `zookeeper` package (installed when missing, as root or with sudo) and the JRE it
# brings; data and logs in data/zk/N, pids in data/zk/N/pid.
#
#   scripts/zk-ensemble.sh start     # starts the three servers, waits until they serve
#   scripts/zk-ensemble.sh stop      # stops the servers it started (by their pids)
#   scripts/zk-ensemble.sh status    # what each server says (leader, follower, down)
#   scripts/zk-ensemble.sh kill N    # kill -9 of server N (a fault; `start` brings it back)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)/data/zk
JAR=/usr/share/java/zookeeper.jar

srvr() { (exec 3<>/dev/tcp/127.0.0.1/"$1" && printf srvr >&3 && cat <&3) 2>/dev/null | grep Mode || echo "Mode: down"; }

case "${1:-}" in
  start)
    if [ ! -f "$JAR" ]; then
      if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq zookeeper >/dev/null
    fi
    for n in 1 2 3; do
      dir="$ROOT/$n"
      mkdir -p "$dir/data"
      echo "$n" > "$dir/data/myid"
      cat > "$dir/zoo.cfg" <<CFG
# Written by scripts/zk-ensemble.sh. tickTime 250 ms: sessions from 500 ms to 5 s.
tickTime=250
initLimit=40
syncLimit=20
dataDir=$dir/data
clientPort=218$n
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
server.1=127.0.0.1:28881:38881
server.2=127.0.0.1:28882:38882
server.3=127.0.0.1:28883:38883
CFG
      if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "zookeeper $n: already running (pid $(cat "$dir/pid"))"
        continue
      fi
      nohup java -Xmx128m -cp "$JAR" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
        > "$dir/server.log" 2>&1 &
      echo $! > "$dir/pid"
      echo "zookeeper $n: started (pid $!), clients on 127.0.0.1:218$n"
    done
    for n in 1 2 3; do
      for _ in $(seq 1 200); do
        case "$(srvr 218$n)" in *leader* | *follower*) break ;; esac
        sleep 0.1
      done
      mode=$(srvr 218$n)
      echo "zookeeper $n: $mode"
      case "$mode" in *leader* | *follower*) ;; *)
        echo "zookeeper $n did not start serving within 20 s; see $ROOT/$n/server.log" >&2
        exit 1 ;;
      esac
    done
    ;;
  stop)
    for n in 1 2 3; do
      pidfile="$ROOT/$n/pid"
      if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        pid=$(cat "$pidfile")
        kill "$pid"
        # Gone before this returns: a `start` right after must find the ports free.
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
        echo "zookeeper $n: stopped"
      fi
      rm -f "$pidfile"
    done
    ;;
  status)
    for n in 1 2 3; do echo "zookeeper $n: $(srvr 218$n)"; done
    ;;
  kill)
    pidfile="$ROOT/${2:?server number}/pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill -9 "$(cat "$pidfile")" && echo "zookeeper $2: killed"
      while kill -0 "$(cat "$pidfile")" 2>/dev/null; do sleep 0.05; done
    fi
    rm -f "$pidfile"
    ;;
  *)
    echo "usage: $0 start|stop|status|kill N" >&2
    exit 2
    ;;
esac
