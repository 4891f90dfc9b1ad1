-- POST /cart/add as the visitor in $BENCH_COOKIE, quantity 1, cycling over the
-- product ids. A cart line is capped at 99, so the line must not just sit at
-- the cap: each wrk thread owns its own products (thread t of n: ids p with
-- (p - 1) % n == t - 1), adds 1 to each in turn, and after RESET_EVERY rounds
-- removes the line it is at (POST /cart/update quantity=0) instead of adding to it.
-- So 1 request in RESET_EVERY is a line reset (same Redis round trips as an add:
-- session GET, one EVALSHA; its message rides in the notice cookie, no session
-- SET), and no line goes over RESET_EVERY.
-- The headers in $BENCH_HEADERS are sent besides (bench/wrk/headers.lua).
dofile(os.getenv("BENCH_WRK_DIR") .. "/headers.lua")
local RESET_EVERY = 40
local threads_made = 0
local cookie = os.getenv("BENCH_COOKIE") or ""

function setup(thread)
  threads_made = threads_made + 1
  thread:set("thread_index", threads_made)
end

function init(args)
  n = 0
  products = {}
  local count = tonumber(os.getenv("BENCH_THREADS") or "2")
  for p = 1, 12 do
    if (p - 1) % count == thread_index - 1 then
      products[#products + 1] = p
    end
  end
  headers = add_bench_headers({
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = cookie,
  })
end

function request()
  local i = n
  n = n + 1
  local k = #products
  local product = products[(i % k) + 1]
  local round = math.floor(i / k)
  if round % RESET_EVERY == RESET_EVERY - 1 then
    return wrk.format("POST", "/cart/update", headers, "product_id=" .. product .. "&quantity=0")
  end
  return wrk.format("POST", "/cart/add", headers, "product_id=" .. product .. "&quantity=1")
end

dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
