-- wrk script: closed-loop POSTs of prepared request bodies, byte for byte (JSON, or a JSON
-- header followed by binary tensors), in turn. Prints the same BENCH_JSON line as predict.lua.
-- Environment: BENCH_BODIES (colon-separated files; "<file>.headers" beside one, if present,
-- holds that body's own headers, one "Name: value" a line), BENCH_PATH, BENCH_KEY,
-- BENCH_CONTENT_TYPE.
local requests = {}
local counter = 0

local function read(path)
  local file = io.open(path, "rb")
  if file == nil then
    return nil
  end
  local data = file:read("*a")
  file:close()
  return data
end

for path in string.gmatch(os.getenv("BENCH_BODIES"), "[^:]+") do
  -- wrk.format sends the headers it is given instead of wrk.headers (Host apart): all of them.
  local headers = {
    ["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE"),
    ["X-API-Key"] = os.getenv("BENCH_KEY"),
  }
  local extra = read(path .. ".headers")
  if extra ~= nil then
    for name, value in string.gmatch(extra, "([^:\n]+):%s*([^\n]*)") do
      headers[name] = value
    end
  end
  table.insert(requests, { body = assert(read(path)), headers = headers })
end

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")

function request()
  counter = counter + 1
  local chosen = requests[(counter % #requests) + 1]
  return wrk.format(nil, nil, chosen.headers, chosen.body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "non2xx": %d, "errors": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
