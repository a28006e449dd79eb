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
