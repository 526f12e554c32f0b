-- wrk script of bench/bench_events.py: POST /webhook/email, ONE Brevo event per request.
--
--   wrk -t1 -c32 -d60s --latency -s bench/events_wrk.lua http://127.0.0.1:PORT/webhook/email -- TOKEN PREFIX
--
-- Every request carries a different message-id and timestamp (run prefix, wrk thread id, per-thread
-- counter), so the receiver's deduplication keeps every one of them: rows stored = 2xx answers.
-- done() prints one line "WRK_JSON {...}" that the benchmark reads (statuses other than 2xx/3xx
-- are wrk's errors.status; no response() hook, which would slow wrk down).

local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

local counter = 0
local prefix = "run"
local events = {"delivered", "opened", "unique_opened", "click", "delivered", "opened", "request", "click"}

function init(args)
   prefix = args[2] or "run"
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. (args[1] or "")
end

function request()
   counter = counter + 1
   local event = events[counter % #events + 1]
   local seconds = 1763370000 + counter
   local client = (counter * 7919 + tid) % 5000
   local link = ""
   if event == "click" then
      link = string.format(',"link":"https://www.domaine-exemple.fr/boutique/RIES-23?utm_source=brevo&n=%d"', counter)
   end
   local body = string.format(
      '{"event":"%s","email":"client%d@example.fr","id":471234,"date":"2026-11-17 10:00:00",' ..
      '"ts":%d,"message-id":"<%s.%d.%d@smtp-relay.mailin.fr>","ts_event":%d,"ts_epoch":%d%03d,' ..
      '"subject":"Nos vins pour vous","tag":"hebdo-2026-11-15","tags":["hebdo-2026-11-15"],' ..
      '"sending_ip":"185.41.28.109","X-Mailin-custom":"hebdo-2026-11-15|%d"%s}',
      event, client, seconds, prefix, tid, counter, seconds, seconds, counter % 1000, client, link)
   return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max))
end
