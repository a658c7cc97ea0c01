#!/usr/bin/env bash
# Installs the Debian packages the tests use, when they are missing.
# As root (as CI runs) it runs apt-get; otherwise it prints exactly what to install.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

have ffmpeg || need+=(ffmpeg)
have ffprobe || need+=(ffmpeg)
have redis-server || need+=(redis-server)
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || need+=(postgresql)
have radosgw || need+=(radosgw)
have ceph-mon || need+=(ceph-mon)
have ceph-osd || need+=(ceph-osd)
have ceph-authtool || need+=(ceph-common)
have uuidgen || need+=(uuid-runtime)
have chromium || need+=(chromium)
have openssl || need+=(openssl)
# The watermarked copies' font (evidence/media/watermark.py).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need+=(fonts-dejavu-core)
have sqlite3 || need+=(sqlite3)
have curl || need+=(curl)
have pdftotext || need+=(poppler-utils)  # the statement PDF's text, fonts and a PNG of it
have pdffonts || need+=(poppler-utils)
have pdftoppm || need+=(poppler-utils)
have mkfs.ext4 || need+=(e2fsprogs)  # read-only camera cards in the dock tests
have systemd-analyze || need+=(systemd)  # checks the docking PC's unit file
have nginx || [ -x /usr/sbin/nginx ] || need+=(nginx-light)  # bench/serve.py's baseline

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# De-duplicate, keep order.
mapfile -t need < <(printf '%s\n' "${need[@]}" | awk '!seen[$0]++')
if [ "$(id -u)" -ne 0 ]; then
  echo "The tests need these Debian packages, which are missing:" >&2
  echo "  sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
