-- wrk script for benchmarks/run.sh: one script for every scenario, so wrk does the same work
-- per request whatever the target.
--
--   BENCH_REQUEST=get      GET of the URL's path
--   BENCH_REQUEST=post     POST of a small JSON start body (a synchronous call)
--   BENCH_REQUEST=async    the same POST with X-ATK-Mode: async (atkproxy answers 202)
--   BENCH_COUNT_STATUS=1   also count responses by status (costs wrk a Lua call per response)
--   BENCH_CALLBACK=URL     async: ask for a callback to URL (X-ATK-Callback)
--
-- done() prints one line, "BENCH_JSON {...}", that benchmarks/report.py reads.

local kind = os.getenv("BENCH_REQUEST") or "get"

if kind == "post" or kind == "async" then
  wrk.method = "POST"
  wrk.body = '{"name":"Ada Lovelace","email":"ada@example.org","age":36,"approval":false}'
  wrk.headers["Content-Type"] = "application/json"
  if kind == "async" then
    wrk.headers["X-ATK-Mode"] = "async"
    local callback = os.getenv("BENCH_CALLBACK")
    if callback and callback ~= "" then
      wrk.headers["X-ATK-Callback"] = callback
    end
  end
elseif kind ~= "get" then
  error("BENCH_REQUEST must be get, post or async, got " .. kind)
end

-- per thread; read back through thread:get in done()
statuses = {}

if os.getenv("BENCH_COUNT_STATUS") == "1" then
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'BENCH_JSON {"kind":"%s","requests":%d,"duration_s":%.3f,"rps":%.1f,'
      .. '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"mean_ms":%.3f,"max_ms":%.3f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},'
      .. '"statuses":{%s}}\n',
    kind, summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, e.status, table.concat(parts, ",")))
end
