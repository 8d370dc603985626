-- POST one JSON body per request in which every `__N__` is a number unique to the request (and `__RUN__` a run
-- tag), so every request is a new event (Datadog `id`), monitor and scope: the bridge stores each as new.
--
--   wrk -t1 -c8 -d10s -s benchmarks/wrk/unique_id.lua http://127.0.0.1:8080/webhooks/datadog \
--       -- <template file> <bearer token> <run tag> <base number>
--
-- The template is a file with the body (run.py writes it from bench/payloads.py). Numbers are
-- base + thread * 10,000,000 + request count. At the end one line `WRK_JSON {...}` gives the requests, the
-- non-2xx answers (counted here: wrk's own summary counts only >= 400), errors and latency percentiles.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open the body template " .. tostring(args[1]))
  local template = file:read("*a")
  file:close()
  template = template:gsub("__RUN__", args[3])
  parts = {}
  local pos = 1
  while true do
    local first, last = template:find("__N__", pos, true)
    if not first then break end
    table.insert(parts, template:sub(pos, first - 1))
    pos = last + 1
  end
  table.insert(parts, template:sub(pos))
  base = tonumber(args[4]) + tid * 10000000
  count = 0
  non2xx = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end

function request()
  count = count + 1
  return wrk.format(nil, nil, nil, table.concat(parts, string.format("%d", base + count)))
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local non = 0
  for _, thread in ipairs(threads) do
    non = non + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, non, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
