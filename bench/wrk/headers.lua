-- Shared by the wrk scripts: the headers in $BENCH_HEADERS ("Name: value"
-- lines, e.g. a browser's Accept-Encoding), added to `into`.
function add_bench_headers(into)
  for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
    local name, value = string.match(line, "^([^:]+):%s*(.*)$")
    if name then
      into[name] = value
    end
  end
  return into
end
