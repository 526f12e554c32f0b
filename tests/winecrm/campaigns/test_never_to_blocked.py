"""Property: whatever the recommendations say, no e-mail goes to a suppressed (unsubscribed, hard
bounce, spam complaint, erased), opted-out or invalid address, nor to the control group — with
suppressions arriving before the render, between render and send, or after — and every customer
who may be written to gets exactly one e-mail."""

from __future__ import annotations

import shutil

from hypothesis import HealthCheck, given, settings, strategies as st
from winecrm.campaigns import render, send

from tests.fakes.estate import AS_OF

customer = st.fixed_dictionaries({
    "address": st.sampled_from(["ok", "malformed", "missing", "flagged_invalid"]),
    "opt_out": st.sampled_from([None, False, True]),
    "suppressed": st.sampled_from([None, "before_render", "between_render_and_send", "after_send"]),
    "reason": st.sampled_from(["unsubscribed", "hard_bounce", "spam", "erased"]),
    "control": st.booleans(),
    "scenario": st.sampled_from(["cross_sell", "rebuy", "winback"]),
    "upper_case": st.booleans(),  # the address as the ERP writes it, the suppression lower-cased
})


def _reset(conn) -> None:
    for table in ("crm.email_sends", "crm.campaigns", "crm.recommendations", "crm.suppressions", "etl.clients"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("INSERT INTO etl.file_manifest (file_id, dataset, file_path, sha256, size_bytes, file_mtime, status, "
                 "run_id) VALUES (1, 'clients', 'clients.csv', repeat('0', 64), 0, now(), 'loaded', 't') "
                 "ON CONFLICT DO NOTHING")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers=st.lists(customer, min_size=1, max_size=12))
def test_no_email_to_a_blocked_address_whatever_the_timing(conn, tmp_path, customers):
    _reset(conn)
    addresses = {}
    for i, c in enumerate(customers):
        code = f"C{i:03d}"
        address = {"ok": f"client{i}@example.fr", "malformed": f"client{i}@@example", "missing": None,
                   "flagged_invalid": f"client{i}@example.fr"}[c["address"]]
        if address and c["upper_case"]:
            address = address.upper()
        addresses[code] = address
        conn.execute("INSERT INTO etl.clients (client_code, prenom, email, email_valid, opt_out, file_id, source_row, "
                     "loaded_run) VALUES (%s, 'Anne', %s, %s, %s, 1, %s, 't')",
                     (code, address, c["address"] != "flagged_invalid", c["opt_out"], i))
        conn.execute("INSERT INTO crm.recommendations (as_of_date, client_code, rank, scenario, segment, article, produit, "
                     "score, reason_fr, is_control, computed_run) VALUES (%s, %s, 1, %s, 'Standard', 'RIES-23', "
                     "'Riesling 2023', 1, 'Une découverte pour vous : notre Riesling 2023.', %s, 't')",
                     (AS_OF, code, c["scenario"], c["control"]))

    def suppress(timing: str) -> None:
        for i, c in enumerate(customers):
            address = addresses[f"C{i:03d}"]
            if c["suppressed"] == timing and address:
                conn.execute("INSERT INTO crm.suppressions (email, reason, source) VALUES (lower(%s), %s, 'test') "
                             "ON CONFLICT DO NOTHING", (address, c["reason"]))
        conn.commit()

    suppress("before_render")
    render.render_campaign(conn, "t", AS_OF, mode="dry_run")
    suppress("between_render_and_send")
    outbox = tmp_path / "outbox"
    shutil.rmtree(outbox, ignore_errors=True)
    send.send_campaign(conn, render.campaign_id_for(AS_OF, "dry_run"), outbox=outbox)
    suppress("after_send")

    written = {code for (code,) in conn.execute("SELECT client_code FROM crm.email_sends WHERE status = 'simulated'")}
    files = {p.stem.rsplit("-", 1)[1] for p in outbox.rglob("*.eml")}
    assert files == written
    for i, c in enumerate(customers):
        code = f"C{i:03d}"
        may_write = (c["address"] == "ok" and c["opt_out"] is not True and not c["control"]
                     and c["suppressed"] in (None, "after_send"))
        assert (code in written) == may_write, (code, c)
    # one ledger row per recommended customer, never two
    assert conn.execute("SELECT count(*), count(DISTINCT client_code) FROM crm.email_sends").fetchone() == (
        len(customers), len(customers))
