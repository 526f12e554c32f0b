"""The baselines of the receiver benchmark (bench/bench_events.py), same framework as ours.

* ``naive``: what a receiver usually looks like first — our route and request path exactly
  (the same dispatch of the event posts, authentication, body checks and validation:
  ``receiver._json_body``, ``intake.parse_brevo`` / ``rows``), but each request stores its
  events itself: one INSERT per event and one COMMIT per request, on a synchronous psycopg
  connection of the worker thread it runs on (Starlette's thread pool, 40 threads: up to 40
  requests commit at the same time, so PostgreSQL's own WAL flushes still group their commits).
  Only the storage differs from ours (the process set-up too: the garbage collector's freeze at
  start-up).
* ``nodb``: ours without the database — the same path, then 200 without storing: the ceiling
  of our request path on this machine.
* ``bare``: the framework alone, as usually written — a plain FastAPI route that reads the body
  and returns a dict.
"""

import contextlib
import gc
import threading

from fastapi import Request  # evaluated by FastAPI at route definition (no postponed annotations here)

def _naive_insert() -> str:
    from winecrm.events.intake import COLUMNS

    values = ", ".join("%s::jsonb" if c == "payload" else "%s" for c in COLUMNS)
    return f"INSERT INTO crm.webhook_events ({', '.join(COLUMNS)}) VALUES ({values}) ON CONFLICT (dedupe_key) DO NOTHING"


def create_baseline_app(kind: str, auth, database_url: str | None):
    import psycopg
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute
    from starlette.concurrency import run_in_threadpool

    from winecrm.events import intake, receiver

    # our route class and start-up (the code of ours before issue 11's tuning: FastAPI's own route
    # class, no freeze), so that only the storage differs
    tuned = hasattr(receiver, "_direct_route_class")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if kind != "bare" and tuned:  # as ours does at start-up (see receiver.create_app)
            gc.collect()
            gc.freeze()
        yield

    app = FastAPI(title=f"winecrm receiver baseline: {kind}", lifespan=lifespan)
    route_class = receiver._direct_route_class() if tuned else APIRoute
    local = threading.local()
    naive_insert = _naive_insert()

    def store(rows: list[tuple]) -> int:
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = local.conn = psycopg.connect(database_url, application_name="naive-receiver")
        try:
            stored = 0
            with conn.cursor() as cur:
                for row in rows:
                    cur.execute(naive_insert, row)
                    stored += cur.rowcount
            conn.commit()
            return stored
        except psycopg.Error:
            conn.close()
            raise

    async def brevo_events(request: Request):
        if not auth.allows(request.headers.get("authorization")):
            return receiver._problem(401, "missing or wrong credentials")
        data, replaced, error = await receiver._json_body(request, receiver.MAX_BODY_BYTES)
        if error is not None:
            return error
        try:
            events = intake.parse_brevo(data)
        except intake.TooLarge as exc:
            return receiver._problem(413, str(exc))
        if replaced:
            events = intake.with_problem(events, "characters replaced")
        rows = intake.rows(events)
        if kind == "nodb":
            return JSONResponse({"received": len(rows), "stored": len(rows), "duplicates": 0,
                                 "parked": sum(1 for e in events if e.problem)})
        try:
            stored = await run_in_threadpool(store, rows)
        except psycopg.Error:
            return receiver._problem(503, "the event queue is unavailable", {"Retry-After": "60"})
        return JSONResponse({"received": len(rows), "stored": stored, "duplicates": len(rows) - stored,
                             "parked": sum(1 for e in events if e.problem)})

    async def bare(request: Request):
        await request.body()
        return {"received": 1, "stored": 1, "duplicates": 0}

    if kind == "bare":
        app.post("/webhook/email")(bare)
    else:
        app.router.add_api_route("/webhook/email", brevo_events, methods=["POST"], route_class_override=route_class)

    @app.get("/webhook/health")
    def health():
        return {"status": "ok"}

    if kind != "bare" and hasattr(receiver, "events_first"):  # dispatched as ours is: only the storage differs
        return receiver.events_first(app, {"/webhook/email": brevo_events})
    return app
