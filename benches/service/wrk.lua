-- Load script for wrk (used by benches/service): API key header, optional random item ids,
-- and a machine-readable summary line.
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then
  wrk.headers["X-API-Key"] = key
end

local prefix = os.getenv("BENCH_ITEM_PREFIX")
local count = tonumber(os.getenv("BENCH_ITEM_COUNT") or "0")
local next_id = 0

if prefix and prefix ~= "" then
  setup = function(thread)
    thread:set("thread_id", next_id)
    next_id = next_id + 1
  end
  init = function(args)
    -- Seeded per thread: the same id sequence on every run.
    math.randomseed(4242 + (thread_id or 0))
  end
  request = function()
    return wrk.format("GET", prefix .. math.random(1, count))
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"err_connect\":%d,\"err_read\":%d,\"err_write\":%d,\"err_status\":%d,\"err_timeout\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d,\"mean_us\":%.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
