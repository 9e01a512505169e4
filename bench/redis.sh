#!/usr/bin/env bash
# Measures, against a real redis-server on a free loopback port, in one run:
# the old Redis design's key selection next to bucket.Acquire
# (BenchmarkKeySelection*), slideshowd's Redis ledger (one grant,
# BenchmarkRedisGrant; the scheduler's dispatch path with the ledger on
# Redis and in memory, BenchmarkSchedulerLedger, and its ledger work per
# request with grants in hand, scheduler's BenchmarkLedgerHotPath, on the
# scheduler's own ledger; round trips per request
# with saturated lanes, BenchmarkRedisRoundTrips), runs the over-admission
# test on it, compares with benchstat, and stops the server. Needs Debian's
# redis-server package; without it, says so and exits 0 (CI does not
# depend on it).
#
#   bench/redis.sh                 # or: make bench-redis
#   COUNT=10 BENCHTIME=2s SATURATION=30s bench/redis.sh
#
# BenchmarkSchedulerLedger and BenchmarkLedgerHotPath run a fixed LEDGER_N
# jobs per run (default 300000x): with -benchtime 1s a quiet machine asks
# them for more than 90 % of their lanes' day, which they refuse.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bench/redis.sh: redis-server is not installed; skipping the Redis comparison." >&2
  echo "  install it with: apt-get install -y redis-server" >&2
  exit 0
fi

COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}
LEDGER_N=${LEDGER_N:-300000x}
SATURATION=${SATURATION:-20s}
OUT=${OUT:-$(mktemp -t bench-redis.XXXXXX)}
SAT_OUT=${SAT_OUT:-$OUT.saturation}

# A free loopback port: the first random candidate nothing answers on.
port=""
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    port=$p
    break
  fi
done
[ -n "$port" ] || { echo "bench/redis.sh: no free port found" >&2; exit 1; }

dir=$(mktemp -d -t bench-redis.XXXXXX)
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
  --dir "$dir" --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.05
done
export REDIS_ADDR=127.0.0.1:$port
echo "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on $REDIS_ADDR (pid $pid)"

echo "machine: $(nproc) cores; $(uptime)"
go test ./bench/ -run 'TestOldDesign' -count=1 -v | grep -E '^(=== RUN|---|    redis_test|ok|FAIL)' || true
go test ./bench/ -run '^$' -bench 'KeySelection|RedisGrant' -benchmem -benchtime "$BENCHTIME" -count "$COUNT" | tee "$OUT"
go test ./bench/ -run '^$' -bench 'SchedulerLedger' -benchmem -benchtime "$LEDGER_N" -count "$COUNT" | tee -a "$OUT"
go test ./scheduler/ -run '^$' -bench 'LedgerHotPath' -benchmem -benchtime "$LEDGER_N" -count "$COUNT" | tee -a "$OUT"
# Saturation runs for SATURATION (plus 2 s of warm-up) per case: one iteration each.
go test ./bench/ -run '^$' -bench 'RedisRoundTrips' -benchtime 1x -count 1 -redis-saturation "$SATURATION" | tee "$SAT_OUT"
echo "machine after: $(uptime)"
echo
go tool benchstat -col /impl "$OUT"
echo
go tool benchstat -col /impl "$SAT_OUT"
echo "raw results: $OUT $SAT_OUT"
