-- wrk script of every benchmark case. The method and body come from the
-- environment (BENCH_METHOD, default GET; BENCH_BODY, default none); the
-- headers come from wrk's -H flags. At the end it prints one line that
-- bench/run.sh reads:
--
--   BENCH rps=N p50_us=N p99_us=N requests=N status_errors=N socket_errors=N

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.body = body
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "BENCH rps=%.1f p50_us=%d p99_us=%d requests=%d status_errors=%d"
      .. " socket_errors=%d\n",
    summary.requests / summary.duration * 1e6,
    latency:percentile(50), latency:percentile(99), summary.requests,
    e.status, e.connect + e.read + e.write + e.timeout))
end
