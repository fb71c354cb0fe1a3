-- wrk script: predict.lua's closed-loop POSTs of real JPEG photos, each with an X-Routing-Key
-- from BENCH_ROUTING_KEYS distinct callers (so a canary split sends about its share to the
-- canary). Environment: BENCH_IMAGES, BENCH_PATH, BENCH_KEY, BENCH_ROUTING_KEYS.
local boundary = "mlplatformbenchboundary"
local bodies = {}
local counter = 0
local keys = tonumber(os.getenv("BENCH_ROUTING_KEYS") or "200")

for path in string.gmatch(os.getenv("BENCH_IMAGES"), "[^:]+") do
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  table.insert(bodies, "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
    .. "Content-Type: image/jpeg\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n")
end

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.headers["X-API-Key"] = os.getenv("BENCH_KEY")

function request()
  counter = counter + 1
  -- wrk.format uses these headers instead of wrk.headers: all of them, every time.
  local headers = {["X-Routing-Key"] = "caller-" .. (counter % keys)}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  return wrk.format(nil, nil, headers, bodies[(counter % #bodies) + 1])
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "non2xx": %d, "errors": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
