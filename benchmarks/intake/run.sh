#!/usr/bin/env bash
# Intake throughput and latency: `sluice serve` on loopback, wrk posting signed webhooks.
# Usage: benchmarks/intake/run.sh [seconds] [connections] [api workers]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-15}; conns=${2:-50}
port=18080
db=redis://127.0.0.1:6379/12
export REDIS_URL=$db SLUICE_QUEUE=intake-bench CHATWOOT_WEBHOOK_SECRET=bench-secret \
       SLUICE_LOG_FORMAT=text
redis-cli -n 12 flushdb >/dev/null
.venv/bin/python benchmarks/intake/make_requests.py /tmp/sluice-intake-requests.jsonl 20000 bench-secret
.venv/bin/sluice serve --port $port 2>/tmp/sluice-intake-serve.log &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "API listening" /tmp/sluice-intake-serve.log && break; sleep 0.1; done
wrk -t2 -c"$conns" -d"${secs}s" --latency -s benchmarks/intake/wrk_intake.lua \
    "http://127.0.0.1:$port" -- /tmp/sluice-intake-requests.jsonl
echo "queued: $(redis-cli -n 12 zcard 'sluice:{intake-bench}:waiting')"
redis-cli -n 12 flushdb >/dev/null
