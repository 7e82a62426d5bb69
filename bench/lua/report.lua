-- wrk report hook: prints one machine-readable line at the end of the run,
--   BENCH_JSON {"requests": ..., "latency_us": {"p50": ...}, "errors": {...}}
-- which bench/wrk.py parses (sturdier than scraping wrk's text summary).
-- Latencies and duration are in microseconds, as wrk keeps them.

-- latency:percentile(p), working around a wrk 4.1 bug: its coordinated-omission
-- correction can add samples below the histogram's min, which percentile() never
-- walks, so high percentiles come back as 0 (seen with pipelining). When that
-- happens, bisect for the share of samples percentile() can see, and shift p by
-- the unseen share (those samples all lie below min). Cost: ~40 percentile() calls,
-- only in that case. (Walking buckets with latency(i) instead is quadratic.)
local function pct(latency, p)
  local value = latency:percentile(p)
  if value > 0 or latency.max == 0 then return value end
  local lo, hi = 0, p
  for _ = 1, 40 do
    local mid = (lo + hi) / 2
    if latency:percentile(mid) > 0 then lo = mid else hi = mid end
  end
  local unseen = 100 - lo
  if p <= unseen then return latency.min end
  return latency:percentile(p - unseen)
end

done = function(summary, latency, requests)
  local e = summary.errors
  local max = latency.max
  if summary.requests == 0 then max = 0 end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d,"stdev":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    pct(latency, 50), pct(latency, 90), pct(latency, 99),
    latency.mean, max, latency.stdev))
end
