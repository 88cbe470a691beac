#!/usr/bin/env bash
# Bad CLI input gets a clear error and exit status 2 (usage) or 1 (failure), and creates nothing.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd jq

# expect_error "CODES" ARGS...: ublk-rdma ARGS fails with one of CODES and says why on stderr.
expect_error() {
  local want=$1 err rc
  shift
  log "+ ublk-rdma $* (expecting exit status $want)"
  err=$(bounded 30 "$UBLK" "$@" 2>&1 >/dev/null)
  rc=$?
  printf '%s\n' "$err" | sed 's/^/    /'
  E2E_LAST_ERROR=$err
  [[ " $want " == *" $rc "* ]] || fail "'ublk-rdma $*' exited with $rc, expected $want"
  [[ -n $err ]] || fail "'ublk-rdma $*' failed without a message on stderr"
  no_ublk_devices
}

no_ublk_devices
must "$UBLK" --version
must "$UBLK" features
truncate -s 16M "$E2E_WORK/backing.img"

expect_error 2 add -t bogus -n 0
expect_error 2 add -n 0
expect_error 2 add -t null -n 0 --no-such-option
expect_error "1 2" add -t loop -n 0 -f "$E2E_WORK/does-not-exist.img"
expect_error 2 add -t loop -n 0
expect_error 2 add -t null -n 0 -d 0
expect_error 2 add -t null -n 0 -d 4097
expect_error 2 add -t null -n 0 -q 0
expect_error 2 add -t loop -n 0 -f "$E2E_WORK/backing.img" -d 0
expect_error 2 add -t null -n 0 --size lots
expect_error 2 add -t null -n 0 -r 2
expect_error 2 add -t null -n 0 --spin-us -1
expect_error 2 add -t null -n 0 --poll sometimes
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --push-max lots
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --push-max 1000
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --pull-max lots
# Authentication options: only for rdma, --host-id and --server-key-file only with a key, a key
# file that is missing, not private or not a key: all before anything is created.
expect_error 2 add -t null -n 0 --key-file "$E2E_WORK/none.key"
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --host-id h1
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --key-file "$E2E_WORK/none.key" --host-id 'a b'
expect_error 1 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --key-file "$E2E_WORK/none.key"
"$UBLK" gen-key >"$E2E_WORK/open.key"
chmod 644 "$E2E_WORK/open.key"
expect_error 1 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --key-file "$E2E_WORK/open.key"
(umask 077; echo "not a key" >"$E2E_WORK/bad.key")
expect_error 1 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --key-file "$E2E_WORK/bad.key"
expect_error 1 serve --listen 127.0.0.1 --export vol0=ram:1M --key-file "$E2E_WORK/bad.key"
(umask 077; echo "h1 not-a-key vol0" >"$E2E_WORK/auth-keys")
expect_error 1 serve --listen 127.0.0.1 --export vol0=ram:1M --auth-keys "$E2E_WORK/auth-keys"
(umask 077; echo "h1 $(cat "$E2E_WORK/open.key") vol9" >"$E2E_WORK/auth-keys")
expect_error 1 serve --listen 127.0.0.1 --export vol0=ram:1M --auth-keys "$E2E_WORK/auth-keys"
expect_error 2 gen-key extra
# Poll groups and the authentication backoff: bounded values.
expect_error 2 serve --listen 127.0.0.1 --export vol0=ram:1M --threads 2000
expect_error 2 serve --listen 127.0.0.1 --export vol0=ram:1M --threads -1
# Metrics: a stats format that does not exist, or one without a stats file; stats of a missing device.
expect_error 2 serve --listen 127.0.0.1 --export vol0=ram:1M --stats "$E2E_WORK/s.prom" --stats-format bogus
expect_error 2 serve --listen 127.0.0.1 --export vol0=ram:1M --stats-format prometheus
expect_error 1 stats -n 99999 --prometheus
expect_error 2 stats --bogus
expect_error 2 serve --listen 127.0.0.1 --export vol0=ram:1M --auth-backoff 0
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --pull-max 1000
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --write-ack never
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --mr-per-io maybe
expect_error 2 add -t null -n 0 --mr-per-io on
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --conns-per-queue 0
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --conns-per-queue 9
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --reconnect-delay 0
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --ctrl-loss-tmo -2
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --fast-io-fail-tmo soon
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --keepalive-tmo -1
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --export vol0 --multipath sometimes
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1:0 --export vol0
expect_error 2 add -t rdma -n 0 --traddr "[fd00::1" --export vol0
expect_error 2 add -t rdma -n 0 --traddr 192.0.2.1 --traddr 192.0.2.1:18520 --export vol0
expect_error 2 add -t rdma -n 0 --traddr a --traddr b --traddr c --traddr d --traddr e --export vol0
expect_error 2 add -t null -n 0 --size 64M --batch-io maybe
expect_error 1 del -n 99
expect_error 1 list -n 99
expect_error 1 recover -n 99
expect_error 2 del
expect_error 2 frobnicate
# The contract a script relies on: usage errors exit 2 with a plain message, before anything is
# touched; sizes are never rounded; options of another target are refused, not ignored.
expect_says() {  # TEXT ARGS...: fails with 2 and says TEXT
  local text=$1
  shift
  expect_error 2 "$@"
  grep -qF -- "$text" <<<"$E2E_LAST_ERROR" || fail "'ublk-rdma $*' does not say '$text'"
}
expect_says "a command is required"
expect_says "unknown command 'frobnicate'" frobnicate
expect_says "not in range 0 to 1048575" del -n -1
expect_says "positive multiple of the 512-byte block size" add -t null -n 0 --size 0
expect_says "positive multiple of the 512-byte block size" add -t null -n 0 --size 1000
expect_says "--traddr is for -t rdma, not -t null" add -t null -n 0 --traddr 192.0.2.1
expect_says "--size is for -t null" add -t loop -n 0 -f "$E2E_WORK/backing.img" --size 1G
expect_says "an export name is" add -t rdma -n 0 --traddr 192.0.2.1 --export bad/name
expect_says "--export 'bad'" serve --listen 127.0.0.1 --export bad
expect_says "--read-only 'vol9'" serve --listen 127.0.0.1 --export vol0=ram:1M --read-only vol9
expect_says "--allow '192.0.2.0/99'" serve --listen 127.0.0.1 --export vol0=ram:1M --allow 192.0.2.0/99
expect_says "not a port" serve --listen 127.0.0.1:0 --export vol0=ram:1M
expect_says "needs an address to listen on" serve --export vol0=ram:1M
expect_says "at least one export" serve --listen 127.0.0.1
expect_error 2 completion zsh
# Configuration files: a bad line names the file and line, and nothing is attached half-way.
printf 'listen = "127.0.0.1"\nexport = ["vol0=ram:1M"]\nthreads = 5000\n' >"$E2E_WORK/serve.conf"
expect_says "serve.conf:3: --threads" serve --config "$E2E_WORK/serve.conf"
printf 'listen = "127.0.0.1"\nexports = ["vol0=ram:1M"]\n' >"$E2E_WORK/serve.conf"
expect_says "serve.conf:2: unknown key 'exports'" serve --config "$E2E_WORK/serve.conf"
expect_says "cannot read configuration file" up --config "$E2E_WORK/none.conf" --all
printf '[ok]\ntype = "null"\nsize = "16M"\n\n[bad]\ntype = "null"\nsize = "1000"\n' >"$E2E_WORK/devices.conf"
expect_says "devices.conf:7: --size 1000" up --config "$E2E_WORK/devices.conf" --all
printf '[ok]\ntype = "null"\nsize = "16M"\n' >"$E2E_WORK/devices.conf"
expect_says "no device 'vol9'" up --config "$E2E_WORK/devices.conf" vol9
expect_says "name exactly one" up --config "$E2E_WORK/devices.conf" --foreground --all

[[ $("$UBLK" list --json | jq length) == 0 ]] || fail "list --json is not an empty array"
log "the backing file is untouched"
[[ $(stat -c %s "$E2E_WORK/backing.img") == 16777216 ]] || fail "the backing file changed size"
cmp -s -n 16777216 "$E2E_WORK/backing.img" /dev/zero || fail "the backing file was written to"
