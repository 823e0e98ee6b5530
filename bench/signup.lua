-- wrk script of bench/signup.py: POST /subscribe, JSON, a distinct address per request.
-- Usage: wrk -t2 -c16 -d15s -s bench/signup.lua http://127.0.0.1:PORT -- PREFIX
-- wrk counts answers of 400 and up as status errors; signup.py also counts rows.
-- done() prints one JSON line (latencies in microseconds) that signup.py reads.

local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

function init(args)
  prefix = args[1] or "bench"
  counter = 0
  headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
end

function request()
  counter = counter + 1
  local body = string.format('{"email": "%s-%d-%d@example.com"}', prefix, tid, counter)
  return wrk.format("POST", "/subscribe", headers, body)
end

function done(summary, latency, _requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, '
      .. '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
      .. '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
