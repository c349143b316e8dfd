-- wrk script: signed GitHub push deliveries, each with a delivery id of its own.
-- The body and its signature come from the files the benchmark writes:
--   RERUND_BENCH_BODY (the JSON body) and RERUND_BENCH_SIGNATURE (sha256=<hex>).
local counter = 0
local thread_number = 0
local threads = {}

function setup(thread)
  thread:set("number", thread_number)
  thread_number = thread_number + 1
end

function init(args)
  local body_file = io.open(os.getenv("RERUND_BENCH_BODY"), "rb")
  wrk.body = body_file:read("*a")
  body_file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "push"
  wrk.headers["X-Hub-Signature-256"] = os.getenv("RERUND_BENCH_SIGNATURE")
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = string.format("bench-%d-%d", number, counter)
  return wrk.format(nil, nil, nil, nil)
end
