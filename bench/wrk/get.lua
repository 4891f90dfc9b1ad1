-- GET of the URL's path, as the visitor whose cookie is in $BENCH_COOKIE
-- ("sid=..."), or anonymously (no Cookie header) when it is empty.
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
