-- wrk script: POST pre-signed Chatwoot webhooks (one per line of requests.jsonl).
local requests = {}
local counter = 0

function init(args)
  local path = args[1] or "requests.jsonl"
  for line in io.lines(path) do
    local body = line:match('"body": "(.*)", "ts"')
    local ts = line:match('"ts": "(%d+)"')
    local sig = line:match('"sig": "([^"]+)"')
    body = body:gsub('\\"', '"'):gsub('\\\\', '\\')
    requests[#requests + 1] = wrk.format("POST", "/webhooks/chatwoot", {
      ["Content-Type"] = "application/json",
      ["X-Chatwoot-Timestamp"] = ts,
      ["X-Chatwoot-Signature"] = sig,
    }, body)
  end
end

function request()
  counter = counter + 1
  return requests[(counter % #requests) + 1]
end

-- One summary line: only answered webhooks count (2xx; wrk counts other statuses as errors).
function done(summary, latency, requests)
  local failed = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  local ok = summary.requests - summary.errors.status
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "intake: processes=%s connections=%s webhooks/s=%.0f p50=%.1fms p99=%.1fms failed=%d\n",
    os.getenv("SLUICE_BENCH_WORKERS") or "?", os.getenv("SLUICE_BENCH_CONNS") or "?",
    ok / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed))
end
