-- Shared by the wrk scripts: at the end of a run, write the summary as JSON to
-- $BENCH_JSON_OUT. wrk counts as errors: socket errors (connect, read, write,
-- timeout) and responses with a status above 399 ("status"); 3xx are successes.
function done(summary, latency, requests)
  local path = os.getenv("BENCH_JSON_OUT")
  if not path or path == "" then return end
  local out = assert(io.open(path, "w"))
  local e = summary.errors
  local pct = {}
  for _, q in ipairs({50, 75, 90, 99, 99.9}) do
    pct[#pct + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
  end
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, "percentiles": {%s}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(pct, ", ")))
  out:close()
end
