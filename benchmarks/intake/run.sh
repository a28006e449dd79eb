#!/usr/bin/env bash
# Intake throughput and latency: `sluice serve --workers N` on loopback, wrk posting signed
# webhooks (each a distinct customer message: verified, parsed, classified, enqueued).
# Usage: benchmarks/intake/run.sh [seconds] [connections] [api processes]
# Prints wrk's report, then one line: processes, connections, 2xx webhooks/s, p50, p99.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-15}; conns=${2:-50}; workers=${3:-1}
port=${SLUICE_BENCH_PORT:-18080}
db=redis://127.0.0.1:6379/12
data=$(mktemp -d)
export REDIS_URL=$db SLUICE_QUEUE=intake-bench CHATWOOT_WEBHOOK_SECRET=bench-secret \
       SLUICE_LOG_FORMAT=text SLUICE_DATA_DIR=$data
redis-cli -n 12 flushdb >/dev/null
# Enough distinct messages that none repeats within the run (a repeat is a cheaper duplicate).
count=$(( secs * 8000 < 20000 ? 20000 : secs * 8000 ))
.venv/bin/python benchmarks/intake/make_requests.py /tmp/sluice-intake-requests.jsonl "$count" bench-secret
log=$data/serve.log
.venv/bin/sluice serve --port $port --workers "$workers" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do grep -q "API listening" "$log" && break; sleep 0.1; done
# Measure this server or nothing (another run may hold the port: SLUICE_BENCH_PORT).
if ! kill -0 $server 2>/dev/null || ! grep -q "API listening" "$log"; then
  echo "sluice serve did not start:" >&2; cat "$log" >&2; exit 1
fi
# Every process answers before the clock starts (uvicorn's children start after the bind).
for _ in $(seq 1 100); do
  [ "$(grep -c 'Application startup complete' "$log")" -ge "$workers" ] && break; sleep 0.1
done
SLUICE_BENCH_WORKERS=$workers SLUICE_BENCH_CONNS=$conns \
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s benchmarks/intake/wrk_intake.lua \
    "http://127.0.0.1:$port" -- /tmp/sluice-intake-requests.jsonl
echo "queued: $(redis-cli -n 12 zcard 'sluice:{intake-bench}:waiting') lanes waiting"
redis-cli -n 12 flushdb >/dev/null
