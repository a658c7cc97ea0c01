#!/usr/bin/env bash
# The S3 server of deploy/compose.yaml: a single-node Ceph (one monitor, one bluestore OSD)
# with its RADOS Gateway, in Ceph's own image, its data on a volume. The first start builds
# the cluster with deploy/dev/ceph-up.sh (the script the tests run) and creates the S3 user
# from RGW_ACCESS_KEY / RGW_SECRET_KEY; later starts run the same daemons on the data kept.
# It stays in the foreground while radosgw runs, and stops the daemons on SIGTERM.
#
# Environment: CEPH_DIR (default /var/lib/ceph/evidence, the volume), RGW_PORT (7480),
# RGW_ACCESS_KEY and RGW_SECRET_KEY (required on the first start), plus ceph-up.sh's own.
# One copy of every object: a pilot's store, not a production cluster (docs/deploy.md).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UP=${CEPH_UP:-$HERE/ceph-up.sh}
DOWN=${CEPH_DOWN:-$HERE/ceph-down.sh}
export CEPH_DIR=${CEPH_DIR:-/var/lib/ceph/evidence}
export RGW_PORT=${RGW_PORT:-7480}
export RGW_BIND=${RGW_BIND:-0.0.0.0}
export OSD_STORE=bluestore
RGW_NAME=client.rgw.evidence
DONE=$CEPH_DIR/.bootstrapped

stop() { "$DOWN" || true; exit 0; }
trap stop TERM INT

if [ ! -e "$DONE" ]; then
  : "${RGW_ACCESS_KEY:?set RGW_ACCESS_KEY (the store's EVIDENCE_S3_ACCESS_KEY)}"
  : "${RGW_SECRET_KEY:?set RGW_SECRET_KEY (the store's EVIDENCE_S3_SECRET_KEY)}"
  # A first start that failed half way left no data worth keeping: ceph-up.sh starts afresh.
  S3_ACCESS_KEY=$RGW_ACCESS_KEY S3_SECRET_KEY=$RGW_SECRET_KEY "$UP" | tail -n 2 | head -n 1
  touch "$DONE"
else
  export CEPH_CONF=$CEPH_DIR/ceph.conf
  rm -f "$CEPH_DIR"/run/*.pid   # from the container's previous life
  ceph-mon -i a >>"$CEPH_DIR/log/mon.stdout" 2>&1
  ceph-osd -i 0 --keyring "$CEPH_DIR/osd.0/keyring" >>"$CEPH_DIR/log/osd.stdout" 2>&1
  radosgw -n "$RGW_NAME" -f </dev/null >>"$CEPH_DIR/log/rgw.stdout" 2>&1 &
  echo $! >"$CEPH_DIR/run/$RGW_NAME.pid"
  echo "rgw-single-node: started the cluster kept in $CEPH_DIR"
fi

# Foreground: as long as radosgw lives (a container whose gateway died is restarted).
while kill -0 "$(cat "$CEPH_DIR/run/$RGW_NAME.pid")" 2>/dev/null; do sleep 5 & wait $!; done
echo "rgw-single-node: radosgw exited; see $CEPH_DIR/log" >&2
"$DOWN" || true
exit 1
