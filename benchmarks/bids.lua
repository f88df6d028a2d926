-- wrk script for benchmarks/auction.py: every request is a new bid by one provider on one order.
-- args: <pairs file: "token order_id" per line> <number of threads> <first pair to use>
local pairs_list = {}
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local token, order = line:match("(%S+) (%S+)")
    pairs_list[#pairs_list + 1] = { token, order }
  end
  stride = tonumber(args[2])
  idx = tonumber(args[3]) + id
  created = 0
  refused = 0
end

function request()
  local pair = pairs_list[(idx % #pairs_list) + 1]
  idx = idx + stride
  local price = 1000000 + math.random(0, 3000000)
  return wrk.format("POST", "/api/v1/orders/" .. pair[2] .. "/bids/", {
    ["Authorization"] = "Bearer " .. pair[1],
    ["Content-Type"] = "application/json",
  }, '{"price_per_hour": ' .. price .. '}')
end

function response(status, headers, body)
  if status == 201 then created = created + 1 else refused = refused + 1 end
end

function done(summary, latency, requests)
  local c, r = 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    r = r + t:get("refused")
  end
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "created": %d, "refused": %d, "duration_us": %d, "errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, c, r, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
