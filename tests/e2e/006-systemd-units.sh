#!/usr/bin/env bash
# The package's systemd units under systemd itself. The clean Debian 12 root with the package
# installed (ci/package --install-test leaves it at build/package/root; UBLK_RDMA_PACKAGE_ROOT
# names another) boots its own systemd 252 as PID 1 of a container: new pid and mount
# namespaces, the root an overlay on tmpfs (the shared root is never written), the guest's /dev
# and network (rxe). Configured only by files in /etc/ublk-rdma, as an administrator would:
#   1. at boot, ublk-rdma-serve@test and ublk-rdma-devices come up; the devices wait for the
#      server to be ready (Type=notify), both are live and verify clean; `systemctl reload` of
#      the server reaches it (SIGHUP: this one has no auth-keys to read again, and says so);
#   2. a device daemon SIGKILLed under fio verify: `systemctl reload ublk-rdma-devices`
#      recovers it with 0 errors; `systemctl stop` deletes both devices;
#   3. ublk-rdma@vol1: live when `systemctl start` returns; its process SIGKILLed under fio
#      verify, systemd restarts it and the restart recovers the device with 0 errors; `stop`
#      deletes it;
#   4. the packages installed again (an upgrade's maintainer scripts): nothing restarts, and
#      the devices verify clean;
#   5. poweroff of the container stops the devices first, then the server, with no unit failed.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd unshare nsenter pivot_root fio jq
root=${UBLK_RDMA_PACKAGE_ROOT:-$E2E_ROOT/build/package/root}
[[ -x $root/usr/sbin/ublk-rdma ]] ||
  skip "no installed package root at $root: ci/package --install-test makes it (ci/test's step package)"
[[ -x $root/lib/systemd/systemd ]] || fail "the package root has no systemd"
compgen -G "$root/usr/lib/*/libibverbs/librxe-rdmav*.so" >/dev/null ||
  fail "the package root lacks ibverbs-providers (the package recommends it; rxe needs it)"
no_ublk_devices
setup_rxe
guest_ublk=$UBLK

# The container's root: the package root under a tmpfs overlay.
ctr=$E2E_WORK/ctr
m=$ctr/merged
mkdir -p "$ctr"
must mount -t tmpfs ctr "$ctr"
defer umount -l "$ctr"
mkdir -p "$ctr/upper" "$ctr/work" "$m"
must mount -t overlay overlay -o "lowerdir=$root,upperdir=$ctr/upper,workdir=$ctr/work" "$m"
defer umount -l "$m"

log "configuration: /etc/ublk-rdma/serve-test.conf and devices.conf"
cat >"$m/etc/ublk-rdma/serve-test.conf" <<EOF
listen = "$E2E_RDMA_ADDR"
export = ["vol0=ram:64M", "vol1=ram:64M"]
stats = "/run/ublk-rdma/serve-test.json"
EOF
cat >"$m/etc/ublk-rdma/devices.conf" <<EOF
[vol0]
type = "rdma"
traddr = "$E2E_RDMA_ADDR"
export = "vol0"
number = 0
queues = 2

[vol1]
type = "rdma"
traddr = "$E2E_RDMA_ADDR"
export = "vol1"
number = 1
EOF
# The server is on this host, so the devices wait for it (on a client host they need not).
for d in ublk-rdma-devices.service.d ublk-rdma@.service.d; do
  mkdir -p "$m/etc/systemd/system/$d"
  printf '[Unit]\nWants=ublk-rdma-serve@test.service\nAfter=ublk-rdma-serve@test.service\n' \
    >"$m/etc/systemd/system/$d/10-local-server.conf"
done
must systemctl --root="$m" enable ublk-rdma-serve@test.service ublk-rdma-devices.service
# What a container does not need and would fight the guest for: udev, consoles, logins.
must systemctl --root="$m" mask systemd-udevd.service systemd-udev-trigger.service systemd-udevd-control.socket \
  systemd-udevd-kernel.socket getty@.service getty-static.service console-getty.service systemd-logind.service

# A persistent journal (in the overlay): read after the container is gone, for its shutdown.
mkdir -p "$m/var/log/journal"
journal() { journalctl -D "$m/var/log/journal" --no-pager -o short-monotonic "$@"; }
defer eval 'journal >"$E2E_LOG_DIR/journal.txt" 2>&1'

log "boot: systemd as PID 1 of the container"
unshare --pid --fork --mount --propagation private -- bash -c '
  m=$1
  mount --rbind /dev "$m/dev" && mount --bind /dev/null "$m/dev/console" && cd "$m" && mkdir -p .oldroot && pivot_root . .oldroot &&
    mount -t proc proc /proc && umount -l /.oldroot &&
    exec env -i container=ublk-rdma-e2e /lib/systemd/systemd --log-target=journal --show-status=0' \
  ctr "$m" </dev/null >"$E2E_LOG_DIR/systemd.out" 2>&1 &
unshare_pid=$!
defer kill -KILL "$unshare_pid"
wait_until 30 "systemd to start in the container" eval "pgrep -P $unshare_pid >/dev/null"
sd_pid=$(pgrep -P "$unshare_pid")
defer kill -KILL "$sd_pid"  # PID 1 of its namespace: the kernel kills the rest with it
in_ctr() { nsenter -t "$sd_pid" -m -p -- "$@"; }
# lib.sh's helpers (list, states, counters) now ask the container's ublk-rdma: the devices'
# state is in the container's /run/ublk-rdma, and their daemons' pids are the container's.
UBLK=$E2E_WORK/ublk-in-container
printf '#!/bin/sh\nexec nsenter -t %s -m -p -- /usr/sbin/ublk-rdma "$@"\n' "$sd_pid" >"$UBLK"
chmod +x "$UBLK"
defer ublk_del_quiet_guest 0
defer ublk_del_quiet_guest 1
ublk_del_quiet_guest() { bounded 30 "$guest_ublk" del -n "$1" >/dev/null 2>&1; }

system_state() { in_ctr systemctl is-system-running 2>/dev/null; }
booted() { [[ $(system_state) == @(running|degraded) ]]; }
t0=$SECONDS
wait_until 180 "the container's boot to finish" booted
log "  booted in $((SECONDS - t0)) s: $(system_state)"
in_ctr systemctl --failed --no-legend --no-pager | sed 's/^/    failed: /'
unit_prop() { in_ctr systemctl show -P "$2" "$1"; }
unit_active() { [[ $(in_ctr systemctl is-active "$1") == active ]]; }
for u in ublk-rdma-serve@test.service ublk-rdma-devices.service; do
  unit_active "$u" || { in_ctr systemctl status --no-pager "$u" | sed 's/^/    /'; fail "$u is not active after boot"; }
done
# Type=notify: the server said READY=1 (listening) before the devices' `up --all` began.
ready=$(unit_prop ublk-rdma-serve@test.service ActiveEnterTimestampMonotonic)
began=$(unit_prop ublk-rdma-devices.service InactiveExitTimestampMonotonic)
((ready > 0 && ready <= began)) || fail "the devices started ($began) before the server was ready ($ready)"
wait_state 0 LIVE 20
wait_state 1 LIVE 20
"$UBLK" list | sed 's/^/    /'
[[ $(ublk_json 0 | jq -r .name) == vol0 && $(ublk_json 1 | jq -r .name) == vol1 ]] ||
  fail "list does not name the devices vol0 and vol1"
fio_write_verify boot-vol0 /dev/ublkb0 24M
fio_write_verify boot-vol1 /dev/ublkb1 24M
server_pid=$(unit_prop ublk-rdma-serve@test.service MainPID)
must in_ctr systemctl reload ublk-rdma-serve@test.service
wait_until 20 "the server to log the reload" \
  eval "journal -u ublk-rdma-serve@test.service -o cat | grep -q 'reload: nothing to reload'"
[[ $(unit_prop ublk-rdma-serve@test.service MainPID) == "$server_pid" ]] || fail "the reload restarted the server"

log "a device's daemon SIGKILLed under fio verify; systemctl reload recovers it"
verify_fio_start 0 reload-vol0 2m
pid=$(ublk_daemon_pid 0)
must in_ctr sh -c "kill -KILL $pid"  # the root has no kill(1): the shell's
wait_state 0 QUIESCED 30
must in_ctr systemctl reload ublk-rdma-devices.service
wait_state 0 LIVE 30
[[ $(ublk_daemon_pid 0) != "$pid" ]] || fail "the same daemon pid after the reload"
unit_active ublk-rdma-devices.service || fail "ublk-rdma-devices is not active after the reload"
verify_fio_finish 0 180 "the daemon kill and the unit's reload"
must in_ctr systemctl stop ublk-rdma-devices.service
wait_gone /dev/ublkb0 30
wait_gone /dev/ublkb1 30

log "ublk-rdma@vol1: up on start, restarted and recovered after a SIGKILL, deleted on stop"
must in_ctr systemctl start ublk-rdma@vol1.service
[[ $(ublk_state 1) == LIVE ]] || fail "device 1 is not LIVE when systemctl start returns (state $(ublk_state 1))"
verify_fio_start 1 restart-vol1 2m
must in_ctr systemctl kill --signal=KILL ublk-rdma@vol1.service
wait_until 60 "ublk-rdma@vol1 to be restarted" eval '(($(unit_prop ublk-rdma@vol1.service NRestarts) >= 1))'
wait_until 60 "ublk-rdma@vol1 to be active again" unit_active ublk-rdma@vol1.service
wait_state 1 LIVE 30
verify_fio_finish 1 180 "the unit's SIGKILL and restart"
must in_ctr systemctl stop ublk-rdma@vol1.service
wait_gone /dev/ublkb1 30
[[ $(in_ctr systemctl is-failed ublk-rdma@vol1.service) != failed ]] || fail "ublk-rdma@vol1 failed on stop"

log "the packages installed again under the running units (an upgrade): nothing is restarted"
must in_ctr systemctl start ublk-rdma-devices.service
wait_state 0 LIVE 20
wait_state 1 LIVE 20
debs=("$E2E_ROOT"/build/package/ublk-rdma_*.deb "$E2E_ROOT"/build/package/ublk-rdma-rbd_*.deb)
[[ -f ${debs[0]} && -f ${debs[1]} ]] || fail "no .debs in build/package (ci/package makes them)"
cp "${debs[@]}" "$m/tmp/"
server_pid=$(unit_prop ublk-rdma-serve@test.service MainPID)
daemons=$(ublk_daemon_pid 0; ublk_daemon_pid 1)
log "+ dpkg -i ${debs[*]##*/} (in the container)"
if ! bounded 150 in_ctr dpkg --force-unsafe-io -i "/tmp/${debs[0]##*/}" "/tmp/${debs[1]##*/}"; then
  journal -n 60 | sed 's/^/    journal: /'
  fail "dpkg -i of the packages failed or hung in the container"
fi
[[ $(unit_prop ublk-rdma-serve@test.service MainPID) == "$server_pid" ]] || fail "the upgrade restarted the server"
[[ $(ublk_daemon_pid 0; ublk_daemon_pid 1) == "$daemons" ]] || fail "the upgrade restarted device daemons"
fio_write_verify upgrade-vol0 /dev/ublkb0 24M
no_io_errors 0 1

log "poweroff: the devices are deleted first, then the server stops"
failed_before=$(in_ctr systemctl --failed --no-legend --no-pager | grep -c ublk-rdma)
((failed_before == 0)) || fail "ublk-rdma units failed: $(in_ctr systemctl --failed --no-legend --no-pager)"
cursor=$(journal -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
[[ -n $cursor ]] || fail "no journal cursor"
must in_ctr systemctl poweroff
for ((i = 0; i < 1200; i++)); do kill -0 "$unshare_pid" 2>/dev/null || break; nap 0.1; done
kill -0 "$unshare_pid" 2>/dev/null && fail "the container did not power off within 120 s"
[[ ! -e /dev/ublkb0 && ! -e /dev/ublkb1 ]] || fail "devices are left after the container's poweroff"
down=$(journal --after-cursor="$cursor" --grep 'ublk-rdma' -o cat 2>&1)
printf '%s\n' "$down" | sed 's/^/    journal: /'
grep -E "ublk-rdma.*(Failed with result|failed)" <<<"$down" && fail "a ublk-rdma unit failed on the way down"
# Stop order: the devices' `down --all` finished before the server was told to stop.
devices_stopped=$(journal --after-cursor="$cursor" -u ublk-rdma-devices.service | grep 'Stopped ' | tail -n1)
server_stopping=$(journal --after-cursor="$cursor" -u ublk-rdma-serve@test.service | grep 'Stopping ' | tail -n1)
[[ -n $devices_stopped && -n $server_stopping ]] ||
  fail "the journal does not show both units stopping (devices: '$devices_stopped', server: '$server_stopping')"
t_dev=$(sed -E 's/^\[ *([0-9.]+)\].*/\1/' <<<"$devices_stopped")
t_srv=$(sed -E 's/^\[ *([0-9.]+)\].*/\1/' <<<"$server_stopping")
awk -v a="$t_dev" -v b="$t_srv" 'BEGIN { exit !(a <= b) }' ||
  fail "the server began stopping ($t_srv) before the devices were deleted ($t_dev)"
journal --after-cursor="$cursor" -u ublk-rdma-serve@test.service -o cat | grep -q "Deactivated successfully" ||
  fail "the server did not stop cleanly"
log "  container powered off; devices deleted at $t_dev s, then the server stopped at $t_srv s"
