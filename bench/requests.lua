-- wrk script for bench/run.py: replays pre-built requests round-robin.
--
-- BENCH_REQUESTS names a file of lines "<path> <token>". Every request is formatted once,
-- in init(), so that request() costs the load generator next to nothing whether the run
-- repeats one token or cycles through 20 000 different ones. done() prints one line,
-- "BENCH_RESULT {json}", that run.py parses (latencies in microseconds).

local prepared = {}
local count = 0
local next_index = 0

function init(args)
  local file = os.getenv("BENCH_REQUESTS")
  if file == nil or file == "" then
    error("BENCH_REQUESTS is not set")
  end
  for line in io.lines(file) do
    local path, token = line:match("^(%S+)%s+(%S+)%s*$")
    if path then
      count = count + 1
      prepared[count] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
    end
  end
  if count == 0 then
    error("no requests in " .. file)
  end
end

function request()
  next_index = next_index % count + 1
  return prepared[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
