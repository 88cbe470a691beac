# Shared helpers for the ci/ scripts (sourced, not run).
# shellcheck disable=SC2034  # the variables are for the scripts that source this file
# shellcheck shell=bash

UBLK_RDMA_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Kept outside the repo so fresh clones reuse the downloaded kernels.
UBLK_RDMA_CACHE=${UBLK_RDMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ublk-rdma}
KERNEL_DIR=$UBLK_RDMA_CACHE/kernels

# The guest kernels: Debian suite -> what it is for.
#   trixie: Debian 13, 6.12, the oldest kernel we support.
#   sid:    the newest Debian kernel (7.x at the time of writing; resolved at bootstrap).
KERNEL_SUITES=(trixie sid)

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# resolve_kernel TAG -> prints the kernel directory (cache/kernels/VERSION) for a tag:
# a suite (trixie, sid), a version prefix (6.12, 7, 7.2) or a full version.
resolve_kernel() {
  local tag=$1 dir
  case $tag in
    oldest) tag=trixie ;;
    newest|latest) tag=sid ;;
  esac
  dir=$KERNEL_DIR/$tag
  if [[ -e $dir/vmlinux && -e $dir/initrd.cpio ]]; then
    readlink -f "$dir"
    return 0
  fi
  return 1
}
