-- GET of the URL's path, as the visitor whose cookie is in $BENCH_COOKIE
-- ("sid=..."), or anonymously (no Cookie header) when it is empty; with the
-- headers in $BENCH_HEADERS besides (bench/wrk/headers.lua).
dofile(os.getenv("BENCH_WRK_DIR") .. "/headers.lua")
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
end
add_bench_headers(wrk.headers)
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
