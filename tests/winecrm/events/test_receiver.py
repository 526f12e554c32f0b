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
        assert requests.get(f"{base}/webhook/health", timeout=10).json() == {"status": "ok", "database": "ok"}
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
