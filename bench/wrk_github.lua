-- wrk script: signed GitHub push deliveries, each with a delivery id of its own.
-- RERUND_BENCH_BODIES names a file the benchmark writes, one delivery a line:
--   sha256=<hex signature> TAB <JSON body>
-- Requests cycle through the lines, so the pushed tip keeps moving.
local counter = 0
local thread_number = 0
local deliveries = {}

function setup(thread)
  thread:set("number", thread_number)
  thread_number = thread_number + 1
end

function init(args)
  for line in io.lines(os.getenv("RERUND_BENCH_BODIES")) do
    local signature, body = line:match("^([^\t]+)\t(.*)$")
    deliveries[#deliveries + 1] = { signature = signature, body = body }
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "push"
end

function request()
  counter = counter + 1
  local delivery = deliveries[(counter - 1) % #deliveries + 1]
  wrk.headers["X-GitHub-Delivery"] = string.format("bench-%d-%d", number, counter)
  wrk.headers["X-Hub-Signature-256"] = delivery.signature
  return wrk.format(nil, nil, nil, delivery.body)
end
