#!/usr/bin/env bash
# Start a throwaway single-node Ceph cluster with a RADOS Gateway (S3) for development and tests.
#
# One monitor, one OSD (memstore by default: data lives in RAM and dies with the daemons)
# and radosgw on 127.0.0.1. The last line of stdout is always
#     S3_ENDPOINT=http://127.0.0.1:PORT S3_ACCESS_KEY=... S3_SECRET_KEY=...
# so callers can `eval "$(ceph-up.sh | tail -n1)"`. Stop it with ceph-down.sh (same CEPH_DIR).
#
# Environment (all optional):
#   CEPH_DIR        working directory, wiped and recreated  (default: /tmp/evidence-ceph)
#   RGW_PORT        S3 port                                  (default: 7480)
#   RGW_BIND        address radosgw listens on               (default: 127.0.0.1)
#   MON_V2_PORT     monitor msgr2 port                       (default: 3300)
#   MON_V1_PORT     monitor legacy port                      (default: 6789)
#   OSD_STORE       memstore | bluestore (on disk in CEPH_DIR) (default: memstore)
#   MEMSTORE_BYTES  memstore capacity                        (default: 4 GiB)
#   S3_ACCESS_KEY / S3_SECRET_KEY   the S3 user's keys       (default: random)
#   CEPH_TIMEOUT    seconds to wait for each daemon          (default: 120)
# The OSD and radosgw also bind ports in 6800-7300 (Ceph's default range).
#
# Why a memstore OSD: a test cluster needs no disk, starts in seconds and leaves nothing behind.
set -euo pipefail

DIR=${CEPH_DIR:-/tmp/evidence-ceph}
STORE=${OSD_STORE:-memstore}
RGW_PORT=${RGW_PORT:-7480}
RGW_BIND=${RGW_BIND:-127.0.0.1}
MON_V2=${MON_V2_PORT:-3300}
MON_V1=${MON_V1_PORT:-6789}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-4294967296}
TIMEOUT=${CEPH_TIMEOUT:-120}
RGW_NAME=client.rgw.evidence
MARKER=.evidence-ceph   # proves a directory is ours before we wipe it
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "ceph-up: ERROR: $*" >&2; exit 1; }

# Every binary, and the Debian package that ships it, so a missing one says what to install.
need() {
  local bin=$1 pkg=$2
  command -v "$bin" >/dev/null 2>&1 ||
    die "'$bin' not found. Install Ceph's S3 gateway with: apt-get install -y radosgw ceph-mon ceph-osd ceph-common${pkg:+ $pkg}"
}
need ceph-mon ""; need ceph-osd ""; need radosgw ""; need radosgw-admin ""
need ceph ""; need ceph-authtool ""; need monmaptool ""
need curl curl; need timeout coreutils

case $STORE in memstore|bluestore) ;; *) die "OSD_STORE must be memstore or bluestore, not '$STORE'";; esac
for p in "$RGW_PORT" "$MON_V2" "$MON_V1"; do
  [[ $p =~ ^[0-9]+$ ]] && (( p > 0 && p < 65536 )) || die "bad port '$p'"
done
[[ $DIR = /* ]] || DIR=$(pwd)/$DIR

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$RGW_PORT" "$MON_V2" "$MON_V1"; do
  port_busy "$p" && die "port $p on 127.0.0.1 is already in use (another Ceph? run ceph-down.sh, or set RGW_PORT/MON_V2_PORT/MON_V1_PORT)"
done

# Never wipe a directory that is not ours, nor one whose cluster is still running.
if [ -e "$DIR" ]; then
  if [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && [ ! -e "$DIR/$MARKER" ]; then
    die "$DIR exists, is not empty and was not made by ceph-up.sh; refusing to wipe it"
  fi
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null &&
      die "a daemon from $f is still running; run: CEPH_DIR=$DIR $HERE/ceph-down.sh"
  done
  rm -rf "$DIR"
fi
mkdir -p "$DIR"/{run,log,mon.a,osd.0,rgw}
touch "$DIR/$MARKER"

T0=${EPOCHREALTIME/,/.}
STAGE=init

# On any failure: say where, show the logs, stop what was started.
on_exit() {
  local rc=$?
  [ $rc -eq 0 ] && return
  echo "ceph-up: FAILED during '$STAGE' (exit $rc). Log tails from $DIR/log:" >&2
  for f in "$DIR"/log/*; do
    [ -s "$f" ] || continue
    echo "----- $f" >&2; tail -n 25 "$f" >&2
  done
  CEPH_DIR=$DIR "$HERE/ceph-down.sh" >&2 || true
}
trap on_exit EXIT

# Wait until a check succeeds, at most TIMEOUT seconds. Checks silence their own probes:
# redirecting here would also swallow die()'s message and the failure report.
wait_for() {
  local what=$1; shift
  local deadline=$(( EPOCHSECONDS + TIMEOUT ))
  until "$@"; do
    (( EPOCHSECONDS < deadline )) || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.25
  done
}
# A daemon that died while we wait for it should fail at once, not after the timeout.
alive() { kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null || die "$2 exited; see $DIR/log"; }
quiet() { "$@" >/dev/null 2>&1; }

FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$DIR/ceph.conf
export CEPH_CONF=$CONF
cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon_host = [v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]
public_addr = 127.0.0.1
# cephx stays on: radosgw 16 fails with -13 under auth=none.
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
keyring = $DIR/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
mon_data_avail_crit = 0
ms_bind_ipv6 = false
[mon]
mon_data = $DIR/mon.\$id
mon_allow_pool_delete = true
[osd]
osd_data = $DIR/osd.\$id
osd_objectstore = $STORE
memstore_device_bytes = $MEMSTORE_BYTES
bluestore_block_create = true
bluestore_block_size = 10737418240
bluestore_fsck_on_mount = false
osd_memory_target = 1073741824
[$RGW_NAME]
rgw_frontends = beast endpoint=$RGW_BIND:$RGW_PORT
rgw_data = $DIR/rgw
EOF

STAGE="keys and monitor map"
K=$DIR/keyring
ceph-authtool --create-keyring "$K" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n "$RGW_NAME" --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
chmod 600 "$K"
monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]" "$DIR/monmap" >/dev/null

STAGE="monitor"
ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring "$K" 2>>"$DIR/log/mon-mkfs.log"
# Daemons log to files, never to our stdout: a caller reading our output must see EOF.
ceph-mon -i a >>"$DIR/log/mon.stdout" 2>&1   # daemonizes; writes run/mon.a.pid
CEPH="timeout 20 ceph --connect-timeout 15"
wait_for "the monitor to answer" quiet $CEPH mon stat

STAGE="OSD"
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_SECRET=$(ceph-authtool --gen-print-key)
printf '{"cephx_secret": "%s"}\n' "$OSD_SECRET" > "$DIR/osd-new.json"
OSD_ID=$($CEPH osd new "$OSD_UUID" -i "$DIR/osd-new.json")
rm -f "$DIR/osd-new.json"
[ "$OSD_ID" = 0 ] || die "expected OSD id 0, got '$OSD_ID'"
ceph-authtool --create-keyring "$DIR/osd.0/keyring" --name osd.0 --add-key "$OSD_SECRET" >/dev/null
ceph-osd -i 0 --mkfs --osd-uuid "$OSD_UUID" --keyring "$DIR/osd.0/keyring" 2>>"$DIR/log/osd-mkfs.log"
ceph-osd -i 0 --keyring "$DIR/osd.0/keyring" >>"$DIR/log/osd.stdout" 2>&1   # daemonizes; writes run/osd.0.pid
osd_up() { alive "$DIR/run/osd.0.pid" "ceph-osd"; $CEPH osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'; }
wait_for "the OSD to come up" osd_up

STAGE="radosgw"
# radosgw 16 only stays attached in the foreground (-f); we keep its pid ourselves.
radosgw -n "$RGW_NAME" -f </dev/null >>"$DIR/log/rgw.stdout" 2>&1 &
echo $! > "$DIR/run/$RGW_NAME.pid"
rgw_up() { alive "$DIR/run/$RGW_NAME.pid" "radosgw"; curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/"; }
wait_for "radosgw to serve http://127.0.0.1:$RGW_PORT/" rgw_up

STAGE="S3 user"
rand() { tr -dc "$1" </dev/urandom | head -c "$2" || true; }
ACCESS=${S3_ACCESS_KEY:-$(rand 'A-Z0-9' 20)}
SECRET=${S3_SECRET_KEY:-$(rand 'A-Za-z0-9' 40)}
timeout 60 radosgw-admin -n client.admin user create --uid=evidence --display-name="evidence store" \
  --access-key="$ACCESS" --secret-key="$SECRET" >"$DIR/log/user-create.log" 2>&1 ||
  die "radosgw-admin user create failed; see $DIR/log/user-create.log"

STAGE=done
T1=${EPOCHREALTIME/,/.}
awk -v a="$T0" -v b="$T1" -v d="$DIR" 'BEGIN { printf "ceph-up: ready in %.1f s (dir %s)\n", b - a, d }'
echo "S3_ENDPOINT=http://127.0.0.1:$RGW_PORT S3_ACCESS_KEY=$ACCESS S3_SECRET_KEY=$SECRET"
