#!/usr/bin/env bash
# Sync under churn at full scale, as a user runs it (docs/protocol.md §7):
# a leader with REGIONS regions (default 1,000,000) under churn of about
# CHANGES changed regions per second (default 20,000); a new follower must
# become ready while the churn goes on; then it is stopped for AWAY seconds
# (default 60) and must come back by a delta. Prints the figures.
#
#   scripts/churn_at_scale.sh            # after: cargo build --release -p regionsync-cli
#
# Not part of the test suite: it takes about three minutes and both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-target/release/regionsync}
REGIONS=${REGIONS:-1000000}
CHANGES=${CHANGES:-20000}
AWAY=${AWAY:-60}
D=$(mktemp -d)
LP=${LP:-24790}; LA=$((LP + 1)); FP=$((LP + 2)); FA=$((LP + 3))
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
status() { curl -s "127.0.0.1:$1/status"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
now() { date +%s.%N; }
# Start the follower (on the same data dir each time) as $f; `ready_after
# T0` waits until it is ready and prints the seconds since T0.
start_follower() {
    $B follower --leader http://127.0.0.1:$LP --listen 127.0.0.1:$FP --admin 127.0.0.1:$FA \
        --data-dir "$D/follower" >/dev/null 2>>"$D/follower.log" &
    f=$!; pids+=($f)
}
ready_after() {
    until [ "$(status $FA 2>/dev/null | field "d['ready']" 2>/dev/null)" = "True" ]; do sleep 0.05; done
    python3 -c "print(f'{$(now) - $1:.2f}')"
}

$B leader --listen 127.0.0.1:$LP --admin 127.0.0.1:$LA --data-dir "$D/leader" 2>"$D/leader.log" &
pids+=($!)
sleep 1
$B load --leader http://127.0.0.1:$LP --regions "$REGIONS" | sed 's/^/seed: /'

# About 0.93 of the churn's heartbeats change a region worth a record (the
# rest move flow within PD's rounding), as measured on this generator.
rate=$((CHANGES * 107 / 100))
$B load --leader http://127.0.0.1:$LP --regions "$REGIONS" --duration $((AWAY + 120)) --rate $rate \
    >"$D/load.log" 2>&1 &
load=$!; pids+=($load)
sleep 4
grep -m1 "first churn heartbeat" "$D/load.log" | sed "s/^/churn: /; s/\$/ (the leader holds $REGIONS regions)/"
a=$(status $LA | field "d['details']['accepted']"); sleep 5
b=$(status $LA | field "d['details']['accepted']")
echo "churn: $(( (b - a) / 5 )) changed regions/s from $rate heartbeats/s; ring holds $(status $LA | field "d['details'].get('history_covered_ms')") ms of it"

t0=$(now); start_follower; took=$(ready_after "$t0")
echo "new follower ready after $took s under churn; $(status $FA | field "'full syncs', d['full_syncs'], 'regions', d['regions']")"

kill -TERM $f; wait $f 2>/dev/null || true
echo "follower stopped; away for $AWAY s while the churn goes on"
sleep "$AWAY"
t0=$(now); start_follower; took=$(ready_after "$t0")
echo "back after $AWAY s: ready after $took s; $(status $FA | field "'deltas', d['details']['deltas'], 'full syncs', d['full_syncs'], 'bytes received', d['details']['bytes'], 'frames', d['details']['frames']")"

kill -TERM $load; wait $load 2>/dev/null || true
for _ in $(seq 300); do
    l=$(status $LA | field "d['digest'], d['next_index']")
    fo=$(status $FA | field "d['digest'], d['next_index']")
    [ "$l" = "$fo" ] && break
    sleep 0.1
done
echo "after the churn: leader $l, follower $fo"
[ "$l" = "$fo" ] || { echo "digests differ"; exit 1; }
