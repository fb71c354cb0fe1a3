-- wrk script: closed-loop POSTs of real JPEG photos to the predict endpoint.
-- Environment: BENCH_IMAGES (colon-separated paths), BENCH_PATH, BENCH_KEY.
local boundary = "mlplatformbenchboundary"
local bodies = {}
local counter = 0

local function read(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

-- BENCH_BODY=raw sends the JPEG itself as the body (Content-Type: image/jpeg);
-- anything else sends it as a multipart form field named "image".
local raw = os.getenv("BENCH_BODY") == "raw"

for path in string.gmatch(os.getenv("BENCH_IMAGES"), "[^:]+") do
  local body = read(path)
  if not raw then
    body = "--" .. boundary .. "\r\n"
      .. 'Content-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
      .. "Content-Type: image/jpeg\r\n\r\n" .. body .. "\r\n--" .. boundary .. "--\r\n"
  end
  table.insert(bodies, body)
end

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
if raw then
  wrk.headers["Content-Type"] = "image/jpeg"
else
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
end
wrk.headers["X-API-Key"] = os.getenv("BENCH_KEY")

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter % #bodies) + 1])
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "non2xx": %d, "errors": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
