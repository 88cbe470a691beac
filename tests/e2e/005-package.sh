#!/usr/bin/env bash
# The Debian packages, installed into a clean Debian 12 root (ci/package --install-test leaves
# it at build/package/root with ublk-rdma and ublk-rdma-rbd installed, and has checked there what
# needs no kernel: the rbd module loads; UBLK_RDMA_PACKAGE_ROOT names another root): its
# ublk-rdma, run with the root's own libraries, answers --version, reports the same ublk
# features as build/ublk-rdma, and adds, lists and deletes a null device. The root's /dev,
# /proc, /sys and a tmpfs /run are mounts of this test's own mount namespace, gone when it ends.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd unshare chroot
root=${UBLK_RDMA_PACKAGE_ROOT:-$E2E_ROOT/build/package/root}
[[ -x $root/usr/sbin/ublk-rdma ]] ||
  skip "no installed package root at $root: ci/package --install-test makes it (ci/test's step package)"
no_ublk_devices

# in_root CMD...: CMD in the root, with the guest's /dev, /proc, /sys and a private /run.
in_root() {
  unshare --mount --propagation private -- bash -c '
    r=$1; shift
    mount --rbind /dev "$r/dev" && mount --rbind /proc "$r/proc" && mount --rbind /sys "$r/sys" &&
      mount -t tmpfs run "$r/run" && exec chroot "$r" "$@"' in_root "$root" "$@"
}

log "+ (root) ublk-rdma --version"
version=$(bounded 30 in_root ublk-rdma --version) || fail "ublk-rdma --version failed in the root"
echo "    $version"
[[ $version == "ublk-rdma $("$UBLK" --version | awk '{print $2}')"* ]] ||
  fail "the package's --version ('$version') does not name build/ublk-rdma's version"

log "+ (root) ublk-rdma features"
bounded 30 in_root ublk-rdma features >"$E2E_WORK/features.root" || fail "ublk-rdma features failed in the root"
sed 's/^/    /' "$E2E_WORK/features.root"
must "$UBLK" features >"$E2E_WORK/features.build"
diff -u "$E2E_WORK/features.build" "$E2E_WORK/features.root" ||
  fail "the package's features differ from build/ublk-rdma's on this kernel"

# A device's whole life from the packaged binary: add (its daemon detaches), list, del.
id=7
defer ublk_del_quiet $id
log "+ (root) ublk-rdma add -t null -n $id; list -n $id --json; del -n $id"
bounded 60 in_root bash -c "ublk-rdma add -t null -n $id --size 64M &&
  ublk-rdma list -n $id --json >/run/list.json && cat /run/list.json && ublk-rdma del -n $id" \
  >"$E2E_WORK/device.out" 2>&1
rc=$?
sed 's/^/    /' "$E2E_WORK/device.out"
((rc == 0)) || fail "add, list or del of a null device failed in the root (status $rc)"
grep -q '"state": "LIVE"' "$E2E_WORK/device.out" || fail "the device was not LIVE in list --json"
[[ ! -e /dev/ublkb$id ]] || fail "/dev/ublkb$id is still there after del"
