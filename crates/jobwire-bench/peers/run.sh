#!/usr/bin/env bash
# jobwire next to nginx + nchan on the same scenarios (issue 14, "peers in your own
# bench"). From the repository root:
#
#   bash crates/jobwire-bench/peers/run.sh [--duration 20] [--out DIR] [--only fanout-200,idle]
#
# Installs nginx + libnginx-mod-nchan if missing (Debian packages), builds the release
# binaries, then runs peers/run.py (standard library Python), which prints one JSON
# line and the side-by-side table. Uses $CARGO_TARGET_DIR if set. Loopback only;
# about 4-5 minutes with the default 20 s per fan-out run.
set -euo pipefail
cd "$(dirname "$0")/../../.."

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[peers] installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
for tool in taskset python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "[peers] $tool is required" >&2; exit 2; }
done

target="${CARGO_TARGET_DIR:-target}"
echo "[peers] cargo build --release -p jobwire -p jobwire-bench (target: $target)" >&2
cargo build --release -p jobwire -p jobwire-bench >&2
exec python3 crates/jobwire-bench/peers/run.py --bin-dir "$target/release" "$@"
