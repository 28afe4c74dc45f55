-- wrk script for benchmarks/replicas.py: async starts (X-ATK-Mode: async) with a callback to
-- the run's receiver (BENCH_CALLBACK). wrk's own summary gives the requests and the non-2xx.
wrk.method = "POST"
wrk.body = '{"name":"Ada Lovelace","email":"ada@example.org","age":36,"approval":false}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-ATK-Mode"] = "async"
wrk.headers["X-ATK-Callback"] = os.getenv("BENCH_CALLBACK") or error("BENCH_CALLBACK is not set")
