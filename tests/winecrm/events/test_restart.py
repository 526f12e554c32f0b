"""PostgreSQL stopped and started again while a client posts 5,000 events: every event that got a
2xx is in the queue exactly once, every other one got a 5xx — never a 2xx for a lost event."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
from winecrm.core.migrations import apply_migrations
from winecrm.events.receiver import ReceiverAuth, WebhookAuth, create_app

from tests.winecrm.events.test_receiver import running_receiver

TOKEN = "restart-token-0123456789"
EVENTS = 5000


@pytest.fixture
def own_server(tmp_path):
    """A PostgreSQL of this test's own (the session's is shared): stopping it hurts nobody else."""
    import pgserver
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="delete")
    url = server.get_uri()
    with psycopg.connect(url) as conn:
        apply_migrations(conn)

    def stop_and_start(down_seconds: float) -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        time.sleep(down_seconds)
        # restart on a stopped server starts it with its previous options (socket directory...)
        pg_ctl(["-w", "-l", str(server.log), "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)

    yield url, stop_and_start
    server.cleanup()


def test_restart_while_posting_loses_no_acknowledged_event(own_server):
    url, stop_and_start = own_server
    answers: dict[int, int] = {}
    with running_receiver(create_app(ReceiverAuth(brevo=WebhookAuth(token=TOKEN)), url)) as base:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=8)
        session.mount("http://", adapter)

        def post(i: int) -> None:
            event = {"event": "delivered", "email": f"c{i}@example.fr", "message-id": f"<m{i}@relay>",
                     "ts_epoch": 1_763_370_000_000 + i}
            try:
                status = session.post(f"{base}/webhook/email", json=event, timeout=30,
                                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code
            except requests.RequestException:
                status = 599  # no answer at all: the sender would retry
            answers[i] = status

        restart = threading.Thread(target=lambda: (time.sleep(1.0), stop_and_start(1.5)))
        restart.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(post, range(EVENTS)))
        restart.join()
    acknowledged = {i for i, status in answers.items() if status == 200}
    refused = {i: status for i, status in answers.items() if status != 200}
    assert len(answers) == EVENTS
    assert all(status >= 500 for status in refused.values()), set(refused.values())
    assert refused, "the restart did not interrupt anything: the test proves nothing"
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT substring(email from 'c(\\d+)@')::int, count(*) FROM crm.webhook_events "
                            "GROUP BY 1").fetchall()
    counts = dict(rows)
    assert all(n == 1 for n in counts.values())                 # nothing twice
    assert acknowledged <= set(counts)                            # every 2xx is in the queue
    # a 5xx may still have been committed (the answer lost with the server): the sender's retry
    # is then a duplicate, acknowledged and stored once
    assert len(acknowledged) > EVENTS / 2
