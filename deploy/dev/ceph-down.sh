#!/usr/bin/env bash
# Stop the cluster that ceph-up.sh started in CEPH_DIR: only the daemons named by its pid
# files (never by process name, so other Ceph clusters on the machine are left alone), and
# wait for each to exit. CEPH_PURGE=1 also removes CEPH_DIR afterwards.
#
# Environment: CEPH_DIR (default /tmp/evidence-ceph), CEPH_STOP_TIMEOUT seconds per daemon (30).
set -uo pipefail

DIR=${CEPH_DIR:-/tmp/evidence-ceph}
WAIT=${CEPH_STOP_TIMEOUT:-30}

[ -d "$DIR" ] || { echo "ceph-down: $DIR does not exist; nothing to stop"; exit 0; }

stop() {
  local name=$1 f=$DIR/run/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null)
  [[ $pid =~ ^[0-9]+$ ]] || { rm -f "$f"; return 0; }
  if kill "$pid" 2>/dev/null; then
    local deadline=$(( EPOCHSECONDS + WAIT ))
    while kill -0 "$pid" 2>/dev/null && (( EPOCHSECONDS < deadline )); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "ceph-down: $name (pid $pid) ignored SIGTERM for ${WAIT}s; sending SIGKILL" >&2
      kill -9 "$pid" 2>/dev/null
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    echo "ceph-down: stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# Gateway first (it talks to the OSD), then the OSD, then the monitor.
stop client.rgw.evidence
stop osd.0
stop mon.a

if [ "${CEPH_PURGE:-0}" = 1 ]; then
  if [ -e "$DIR/.evidence-ceph" ]; then rm -rf "$DIR"; echo "ceph-down: removed $DIR"
  else echo "ceph-down: $DIR was not made by ceph-up.sh; not removing it" >&2; fi
fi
exit 0
