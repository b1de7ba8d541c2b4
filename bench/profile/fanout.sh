#!/usr/bin/env bash
# Server CPU, syscalls and instructions per delivered event in fan-out, publish phase only.
#
#   bench/profile/fanout.sh SERVER PORT MODE SUBSCRIBERS RATE SECONDS [TAG]
#     SERVER = baseline | tower-sse-server      MODE = cpu | perfstat | strace | perfrec | callgrind
#
# e.g. bench/profile/fanout.sh tower-sse-server 22910 cpu 1000 50 5
#      bench/profile/fanout.sh baseline 22911 callgrind 200 20 10
# The server runs pinned to core 0, the clients to core 1. `cpu` reads utime/stime and the
# threads' schedstat run time before and after publishing; `perfstat` counts syscalls with perf
# tracepoints; `callgrind` zeroes the counters after the subscribers connected and dumps after
# the last delivery. Results in target/profile/fanout-SERVER-MODE-SUBS-RATExSECONDS[TAG]/meta.txt.
# Build with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p tower-sse-bench --bins
set -u
SERVER=$1; PORT=$2; MODE=$3; SUBS=$4; RATE=$5; DUR=$6; TAG=${7:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
OUT=$ROOT/target/profile/fanout-${SERVER}-${MODE}-${SUBS}-${RATE}x${DUR}${TAG}
mkdir -p "$OUT"; rm -f "$OUT"/*
cd "$OUT"

if [ "$MODE" = callgrind ]; then
  ADDR=127.0.0.1:$PORT WORKERS=1 taskset -c 0 valgrind --tool=callgrind \
    --callgrind-out-file="$OUT/callgrind.out.%p" --collect-atstart=yes \
    --dump-instr=no --separate-threads=no ${CGOPTS:-} \
    "$BIN/$SERVER" > srv.log 2> valgrind.log &
else
  ADDR=127.0.0.1:$PORT WORKERS=1 taskset -c 0 "$BIN/$SERVER" > srv.log 2>&1 &
fi
SPID=$!
echo "server pid $SPID" > meta.txt
for i in $(seq 1 600); do grep -q listening srv.log 2>/dev/null && break; sleep 0.1; done
grep -q listening srv.log || { echo "server did not start"; cat srv.log valgrind.log 2>/dev/null; kill $SPID; exit 1; }

if [ "$SUBS" -gt 0 ]; then
taskset -c 1 "$BIN/loadgen" subscribe --url "http://127.0.0.1:$PORT/events/fan" \
  --connections "$SUBS" --source-ips 127.0.0.1,127.0.0.2 --report "$OUT/sub.json" \
  --duration 120 > sub.out 2> sub.err &
CPID=$!
for i in $(seq 1 1200); do grep -q ready sub.out 2>/dev/null && break; sleep 0.1; done
cat sub.out >> meta.txt
else CPID=; echo '{"delivered":0}' > sub.json; echo '{"delivered":0}' > sub.json.1.json; fi
sleep 1

snap() { # utime stime (ticks) and sum of per-thread schedstat runtime (ns), ctx switches
  local st; st=$(cut -d' ' -f14,15 /proc/$SPID/stat)
  local rt=0 vcs=0 ivcs=0
  for t in /proc/$SPID/task/*; do
    rt=$((rt + $(cut -d' ' -f1 $t/schedstat)))
    vcs=$((vcs + $(awk '/^voluntary_ctxt/{print $2}' $t/status)))
    ivcs=$((ivcs + $(awk '/^nonvoluntary_ctxt/{print $2}' $t/status)))
  done
  echo "$st $rt $vcs $ivcs"
}

OPID=
case $MODE in
  perfstat)
    perf stat -x, -o perfstat.txt -e 'raw_syscalls:sys_enter,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_futex,syscalls:sys_enter_sched_yield,syscalls:sys_enter_epoll_ctl,task-clock,context-switches' -p $SPID &
    OPID=$!;;
  strace)
    strace -c -f -p $SPID -o strace.txt 2> strace.err &
    OPID=$!;;
  perfrec)
    perf record -e cpu-clock -F 4999 -g -p $SPID -o perf.data 2> perfrec.err &
    OPID=$!;;
  callgrind)
    callgrind_control -z $SPID > cg_on.txt;;
esac
sleep 1
S0=$(snap)
T0=$(date +%s.%N)
taskset -c 1 "$BIN/loadgen" publish --url "http://127.0.0.1:$PORT/publish/fan" \
  --rate "$RATE" --size 64 --duration "$DUR" > pub.json
# drain: wait until the subscriber saw everything (or 20 s), then 1 s more
PUB=$(sed 's/.*"published":\([0-9]*\).*/\1/' pub.json)
[ -n "$CPID" ] && kill -USR1 $CPID 2>/dev/null   # not used for counting; harmless (writes sub.json.1.json)
sleep ${DRAIN:-2}
if [ "$MODE" = callgrind ]; then sleep 3; fi
S1=$(snap)
T1=$(date +%s.%N)
case $MODE in
  perfstat|strace|perfrec) kill -INT $OPID; wait $OPID 2>/dev/null;;
  callgrind) callgrind_control -d publish $SPID > cg_dump.txt;;
esac
[ -n "$CPID" ] && { kill -TERM $CPID; wait $CPID 2>/dev/null; }
kill -TERM $SPID; sleep 1; kill -KILL $SPID 2>/dev/null; wait $SPID 2>/dev/null
echo "S0 $S0" >> meta.txt; echo "S1 $S1" >> meta.txt; echo "T0 $T0 T1 $T1" >> meta.txt
echo "pub $(cat pub.json)" >> meta.txt
echo "sub1 $(cat sub.json.1.json 2>/dev/null)" >> meta.txt
echo "sub $(cat sub.json)" >> meta.txt
read u0 s0 r0 v0 i0 <<< "$S0"; read u1 s1 r1 v1 i1 <<< "$S1"
DEL=$(( $(sed 's/.*"delivered":\([0-9]*\).*/\1/' sub.json) + $(sed 's/.*"delivered":\([0-9]*\).*/\1/' sub.json.1.json) ))
python3 - "$u0" "$s0" "$r0" "$u1" "$s1" "$r1" "$DEL" "$PUB" "$v0" "$v1" "$i0" "$i1" <<'EOF' | tee -a meta.txt
import sys
u0,s0,r0,u1,s1,r1,d,p,v0,v1,i0,i1=map(int,sys.argv[1:])
du,ds=(u1-u0)*10000,(s1-s0)*10000  # ticks (10 ms) -> us
rt=(r1-r0)/1000
print(f"published={p} delivered={d} user_us={du} sys_us={ds} sched_runtime_us={rt:.0f}")
if d:
  print(f"per delivery: user={du/d*1000:.0f} ns sys={ds/d*1000:.0f} ns total(stat)={(du+ds)/d*1000:.0f} ns total(schedstat)={rt/d*1000:.0f} ns; vol_cs={v1-v0} invol_cs={i1-i0}")
EOF
if [ "$MODE" = callgrind ] && [ "$DEL" -gt 0 ]; then
  for f in "$OUT"/callgrind.out.*.1; do
    callgrind_annotate "$f" 2>/dev/null | awk -v d="$DEL" '/PROGRAM TOTALS/ && !done {
      gsub(",", "", $1); printf "callgrind, publish phase: %.0f instructions per delivery", $1 / d
      # With --cache-sim=yes the columns are Ir Dr Dw I1mr D1mr D1mw ..., each with its "(%)".
      if (NF >= 12) { gsub(",", "", $9); gsub(",", "", $11); printf ", D1 misses %.1f", ($9 + $11) / d }
      print ""; done = 1 }' | tee -a "$OUT/meta.txt"
  done
fi
