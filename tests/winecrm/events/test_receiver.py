"""The public receiver over real HTTP: the one-click unsubscribe link of every e-mail (RFC 8058)
and the health check."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import requests
import uvicorn
from winecrm.campaigns import render, send
from winecrm.events.receiver import create_app

from tests.fakes.estate import AS_OF, seed_warehouse


@contextlib.contextmanager
def running_receiver(app=None):
    """The receiver on a free loopback port in this process (uvicorn, one worker, its lifespan run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app or create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_unsubscribe_link_suppresses_at_once_and_the_next_send_skips(conn, tmp_path):
    seed_warehouse(conn, 20)
    render.render_campaign(conn, "run_1", AS_OF, mode="dry_run")
    campaign = render.campaign_id_for(AS_OF, "dry_run")
    token, address, code = conn.execute("SELECT unsubscribe_token, email, client_code FROM crm.email_sends "
                                        "WHERE campaign_id = %s ORDER BY send_id LIMIT 1", (campaign,)).fetchone()
    with running_receiver() as base:
        page = requests.get(f"{base}/desinscription/{token}", timeout=10)
        assert page.status_code == 200 and "Me désinscrire" in page.text and address not in page.text
        assert conn.execute("SELECT count(*) FROM crm.suppressions").fetchone()[0] == 0  # a GET never unsubscribes
        # what Gmail's button does (RFC 8058): a POST with List-Unsubscribe=One-Click, nothing else
        done = requests.post(f"{base}/desinscription/{token}", data="List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
        assert done.status_code == 200 and "désinscrit" in done.text
        again = requests.post(f"{base}/desinscription/{token}", data="List-Unsubscribe=One-Click", timeout=10)
        assert again.status_code == 200
        assert conn.execute("SELECT email, reason, source FROM crm.suppressions").fetchall() == [
            (address.lower(), "unsubscribed", "unsubscribe_link")]
        assert requests.get(f"{base}/desinscription/not-a-token", timeout=10).status_code == 404
        assert requests.post(f"{base}/desinscription/not-a-token", timeout=10).status_code == 404
        assert requests.get(f"{base}/webhook/health", timeout=10).json()["status"] == "ok"
    conn.commit()
    # the campaign was rendered before the click: its e-mail to that address is skipped at send time
    send.send_campaign(conn, campaign, outbox=tmp_path)
    assert conn.execute("SELECT status, skip_reason FROM crm.email_sends WHERE campaign_id = %s AND client_code = %s",
                        (campaign, code)).fetchone() == ("skipped", "suppressed")


def test_without_the_database_the_receiver_says_so_and_records_nothing(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setenv("CRM_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{closed}/none?connect_timeout=2")
    with running_receiver() as base:
        health = requests.get(f"{base}/webhook/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        click = requests.post(f"{base}/desinscription/some-token", data="List-Unsubscribe=One-Click", timeout=10)
        assert click.status_code == 503 and "réessayer" in click.text  # never « done » for a lost unsubscribe


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _token(conn) -> tuple[str, str]:
    seed_warehouse(conn, 20)
    render.render_campaign(conn, "run_1", AS_OF, mode="dry_run")
    return conn.execute("SELECT unsubscribe_token, email FROM crm.email_sends WHERE campaign_id = %s "
                        "ORDER BY send_id LIMIT 1", (render.campaign_id_for(AS_OF, "dry_run"),)).fetchone()


def test_a_slow_database_under_an_unsubscribe_never_stalls_the_event_posts(conn, warehouse_url):
    """The unsubscribe waits on a lock; meanwhile Brevo's posts are answered (they used to queue
    behind it: the page ran its database calls on the event loop)."""
    import psycopg
    from winecrm.events.receiver import ReceiverAuth, WebhookAuth

    token, _ = _token(conn)
    conn.commit()
    app = create_app(ReceiverAuth(brevo=WebhookAuth(token="b-token-0123456789")), warehouse_url)
    with running_receiver(app) as base, psycopg.connect(warehouse_url) as locker:
        locker.execute("LOCK TABLE crm.suppressions IN ACCESS EXCLUSIVE MODE")  # held until the commit below
        answers = {}
        click = threading.Thread(target=lambda: answers.update(unsubscribe=requests.post(
            f"{base}/desinscription/{token}", data="List-Unsubscribe=One-Click", timeout=30).status_code))
        click.start()
        deadline = time.time() + 20
        while not conn.execute("""SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                                  AND application_name = 'winecrm-receiver'""").fetchone()[0]:
            assert time.time() < deadline, "the unsubscribe never reached the lock"
            conn.commit()  # a new snapshot of pg_stat_activity
            time.sleep(0.05)
        conn.commit()
        event = {"event": "delivered", "email": "a@example.fr", "message-id": "<slow@relay>", "ts_epoch": 1_763_370_000}
        posted = requests.post(f"{base}/webhook/email", json=event, timeout=4,
                               headers={"Authorization": "Bearer b-token-0123456789"})
        assert posted.status_code == 200 and click.is_alive()  # answered while the unsubscribe still waits
        locker.commit()
        click.join(timeout=30)
    assert answers == {"unsubscribe": 200}
    assert conn.execute("SELECT count(*) FROM crm.suppressions").fetchone()[0] == 1


def test_a_database_that_never_answers_gives_503_after_the_connect_timeout():
    """A server that accepts the connection and says nothing (a hung PostgreSQL, a black-holed
    route): every route answers 503 within the connect timeout instead of hanging."""
    from winecrm.events.receiver import CONNECT_TIMEOUT_S, ReceiverAuth, WebhookAuth

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/none"
    app = create_app(ReceiverAuth(brevo=WebhookAuth(token="b-token-0123456789")), url)
    try:
        with running_receiver(app) as base:
            limit = CONNECT_TIMEOUT_S + 10
            assert requests.get(f"{base}/webhook/health", timeout=limit).status_code == 503
            assert requests.post(f"{base}/desinscription/some-token", timeout=limit).status_code == 503
            event = {"event": "delivered", "email": "a@example.fr", "message-id": "<m@relay>"}
            assert requests.post(f"{base}/webhook/email", json=event, timeout=limit,
                                 headers={"Authorization": "Bearer b-token-0123456789"}).status_code == 503
    finally:
        silent.close()


def test_the_receiver_writes_as_a_role_that_can_do_nothing_else(conn, warehouse_url):
    import psycopg
    from winecrm.events import intake

    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'crm_receiver'").fetchone():
        pytest.skip("the migrating user could not create the role crm_receiver on this server")
    seed_warehouse(conn, 2)
    conn.commit()
    with psycopg.connect(warehouse_url) as session:
        assert intake.restrict_session(session)
        session.execute(intake.INSERT_SQL, intake.insert_params(intake.rows(intake.parse_brevo(
            {"event": "delivered", "email": "a@example.fr", "message-id": "<r@relay>"}))))
        session.commit()
        for forbidden in ("SELECT * FROM etl.clients", "SELECT payload FROM crm.webhook_events",
                          "UPDATE crm.webhook_events SET status = 'done'", "DELETE FROM crm.suppressions",
                          "SELECT * FROM crm.lead_scores", "TRUNCATE crm.webhook_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                session.execute(forbidden)
            session.rollback()
            intake.restrict_session(session)
    with running_receiver(create_app(database_url=warehouse_url)) as base:
        assert requests.get(f"{base}/webhook/health", timeout=10).json() == {
            "status": "ok", "database": "ok", "role": "crm_receiver"}
    assert conn.execute("SELECT count(*) FROM crm.webhook_events").fetchone()[0] == 1


def test_the_link_of_a_test_email_unsubscribes_nobody(conn):
    token, address = _token(conn)
    render.ensure_campaign(conn, "test-hebdo-1", kind="test", as_of=None, mode="test", run_id=None,
                           test_address="marketing@domaine-exemple.fr")
    conn.execute("""INSERT INTO crm.email_sends (campaign_id, client_code, email, scenario, status, idempotency_key,
                                                 template, unsubscribe_token)
                    VALUES ('test-hebdo-1', 'C000001', 'marketing@domaine-exemple.fr', 'rebuy', 'simulated',
                            gen_random_uuid(), 'rebuy', %s)""", (f"{token}-test-1",))
    conn.commit()
    with running_receiver() as base:
        page = requests.get(f"{base}/desinscription/{token}-test-1", timeout=10)
        done = requests.post(f"{base}/desinscription/{token}-test-1", data="List-Unsubscribe=One-Click", timeout=10)
    assert page.status_code == done.status_code == 200 and "e-mail de test" in done.text
    assert conn.execute("SELECT count(*) FROM crm.suppressions").fetchone()[0] == 0


def test_the_pages_a_customer_reads_keep_french_spacing(conn):
    """FRENCH-COPY.md: no ordinary space (one that can wrap) before : ; ! ? %."""
    import re

    token, _ = _token(conn)
    render.ensure_campaign(conn, "test-hebdo-2", kind="test", as_of=None, mode="test", run_id=None,
                           test_address="marketing@domaine-exemple.fr")
    conn.execute("""INSERT INTO crm.email_sends (campaign_id, client_code, email, scenario, status, idempotency_key,
                                                 template, unsubscribe_token)
                    VALUES ('test-hebdo-2', 'C000001', 'marketing@domaine-exemple.fr', 'rebuy', 'simulated',
                            gen_random_uuid(), 'rebuy', %s)""", (f"{token}-test-2",))
    conn.commit()
    with running_receiver() as base:
        pages = [requests.get(f"{base}/desinscription/{token}", timeout=10).text,
                 requests.get(f"{base}/desinscription/{token}-test-2", timeout=10).text,
                 requests.get(f"{base}/desinscription/unknown", timeout=10).text,
                 requests.post(f"{base}/desinscription/{token}", timeout=10).text]
    for page in pages:
        text = re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S)
        assert not re.search(r"\w [:;!?%]", text), text
