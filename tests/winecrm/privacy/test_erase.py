"""GDPR erasure on a real warehouse: a customer who was scored, recommended, e-mailed (dry-run
outbox), quarantined, suppressed and seen by the events tables is erased by address or by
client code — after which no text/jsonb column of any etl/crm table and no file of the outbox,
reports or Data Docs holds their address or name, their Brevo contact is gone (fake Brevo over
real HTTP), and only a hash of the address is left in crm.suppressions. The checks here are
written independently of the code under test (their own catalogue scan, their own file walk)."""

from __future__ import annotations

import email
import email.policy
import hashlib
from pathlib import Path

import pytest
from psycopg import sql
from winecrm.campaigns import render, send
from winecrm.core import settings
from winecrm.privacy import brevo_contacts, erase, files, register
from winecrm.privacy import report as erasure_report
from winecrm.privacy.__main__ import main

from tests.fakes.brevo import FakeBrevoServer
from tests.fakes.estate import AS_OF, seed_warehouse

PERSON = "C000000"                      # first of its scenario: its e-mail is also the preview
NEIGHBOUR = "C000001"                   # someone else, who must not be touched
TYPED = "Hildegarde.Zuckerstein@Example.FR"
ADDRESS = TYPED.lower()
OLD_ADDRESS = "h.zuck@oldmail.example"  # an address of the same person on an older sale line
PERSONAL = ("zuckerstein", "hildegarde", "h.zuck@", "06 11 22 33", "rue des vignes", "riquewihr")
DRY = render.campaign_id_for(AS_OF, "dry_run")
NOT_TEXT = ("smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean", "date",
            "timestamp with time zone", "timestamp without time zone", "interval", "uuid", "bytea")


def _insert_if_present(conn, table: str, values: dict) -> bool:
    """Insert a row into a table another engineer is still shaping (migration 011): only when it
    exists with these columns."""
    schema, name = table.split(".")
    columns = {c for (c,) in conn.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = %s AND table_name = %s", (schema, name))}
    if not set(values) <= columns:
        return False
    conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values))), list(values.values()))
    return True


def _estate(conn) -> None:
    """20 recommended customers; PERSON gets a name, an address, sales lines, a dry-run e-mail
    in the outbox, quarantined rows, a suppression and events."""
    from psycopg.types.json import Jsonb

    seed_warehouse(conn, 20)
    conn.execute("""UPDATE etl.clients SET nom = 'Zuckerstein', prenom = 'Hildegarde', email = %s,
                        telephone = '06 11 22 33 44', adresse = '7 rue des Vignes', code_postal = '68340',
                        ville = 'Riquewihr', pays = 'France' WHERE client_code = %s""", (TYPED, PERSON))
    for row, (address, doc) in enumerate([(ADDRESS, "F-100"), (OLD_ADDRESS, "F-001")]):
        conn.execute("""INSERT INTO etl.ventes_lignes (document_type, document_no, client_code, date_livraison,
                            produit_label, article, qty_line, mt_ht, email, email_valid, code_postal, ville,
                            file_id, source_row, loaded_run)
                        VALUES ('VENTE', %s, %s, '2026-10-01', 'Riesling 2023', 'RIES-23', 6, 75, %s, true,
                                '68340', 'Riquewihr', 1, %s, 'bench')""", (doc, PERSON, address, row + 2))
    conn.execute("""INSERT INTO etl.ventes_lignes (document_type, document_no, client_code, date_livraison, article,
                        qty_line, mt_ht, email, file_id, source_row, loaded_run)
                    VALUES ('VENTE', 'F-200', %s, '2026-10-02', 'RIES-23', 1, 12.5, 'client1@example.fr', 1, 9,
                            'bench')""", (NEIGHBOUR,))
    conn.commit()
    render.render_campaign(conn, "run_1", AS_OF, mode="dry_run")
    send.send_campaign(conn, DRY)
    # after the send: rejected input, an unsubscribe, a note naming the address, events
    quarantine = ("INSERT INTO etl.quarantine (file_id, run_id, dataset, file_path, row_no, expectations, reason, "
                  "raw_values) VALUES (1, 'run_1', %s, 'isavigne/x.csv', %s, ARRAY['email_format'], %s, %s)")
    conn.execute(quarantine, ("clients", 4, f"line 4: email {TYPED.upper()} refused",
                              Jsonb({"client_code": "Z-NEW", "nom": "Zuckerstein", "email": TYPED.upper()})))
    conn.execute(quarantine, ("ventes_lignes", 5, "line 5: qty", Jsonb({"client_code": PERSON, "qty_line": "-x"})))
    conn.execute(quarantine, ("ventes_lignes", 6, "line 6: qty", Jsonb({"client_code": NEIGHBOUR, "qty_line": "?"})))
    conn.execute("INSERT INTO crm.suppressions (email, reason, source) VALUES (%s, 'unsubscribed', 'unsubscribe_link')",
                 (ADDRESS,))
    conn.execute("UPDATE crm.campaigns SET decision_note = %s", (f"checked with {TYPED}",))
    if _insert_if_present(conn, "crm.webhook_events", {
            "source": "brevo", "event": "opened", "email": ADDRESS, "client_code": PERSON,
            "payload": Jsonb({"event": "opened", "email": TYPED}), "dedupe_key": "k1"}):
        event_id = conn.execute("SELECT max(event_id) FROM crm.webhook_events").fetchone()[0]
        _insert_if_present(conn, "crm.automation_actions", {
            "event_id": event_id, "rule_id": "r1", "action_index": 0, "action_type": "add_tag",
            "params": Jsonb({"tag": "engaged"}), "priority": 100, "client_code": PERSON, "due_at": AS_OF})
    _insert_if_present(conn, "crm.customer_tags", {"client_code": PERSON, "tag": "engaged"})
    _insert_if_present(conn, "crm.consent_log", {"email": ADDRESS, "client_code": PERSON,
                                                 "change": "suppressed:unsubscribed", "source": "unsubscribe_link"})
    conn.commit()
    docs_page = settings.paths().docs_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations" / "v.html"
    docs_page.parent.mkdir(parents=True, exist_ok=True)
    docs_page.write_text(f"<td>unexpected: {TYPED.upper()}</td>", encoding="utf-8")
    (settings.paths().reports_dir / "summary.json").write_text('{"customers": 20}', encoding="utf-8")


def _leftovers(conn, needles=PERSONAL + (ADDRESS, OLD_ADDRESS)) -> list[str]:
    """table.column: needle, for every needle still in any non-numeric column of etl/crm."""
    found = []
    columns = conn.execute(
        """SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema IN ('etl', 'crm') AND t.table_type = 'BASE TABLE'
             AND c.data_type <> ALL(%s)""", (list(NOT_TEXT),)).fetchall()
    for schema, table, column in columns:
        for needle in needles:
            n = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}::text ILIKE %s").format(
                sql.Identifier(schema, table), sql.Identifier(column)), (f"%{needle}%",)).fetchone()[0]
            if n:
                found.append(f"{schema}.{table}.{column}: {needle}")
    return found


def _files_mentioning(needles) -> list[str]:
    paths = settings.paths()
    hits = []
    for root in (paths.outbox_dir, paths.reports_dir, paths.docs_dir):
        for path in (p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            text = data.decode("utf-8", "replace")
            if path.suffix == ".eml":
                message = email.message_from_bytes(data, policy=email.policy.default)
                text += str(message["To"]) + "".join(p.get_content() for p in message.walk()
                                                     if p.get_content_maintype() == "text")
            hits += [f"{path.name}: {n}" for n in needles if n.lower() in text.lower()]
    return hits


def _snapshot(conn) -> dict:
    tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                          "WHERE table_schema IN ('etl', 'crm') AND table_type = 'BASE TABLE'").fetchall()
    state = {f"{s}.{t}": conn.execute(sql.SQL("SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                                              "FROM {} x").format(sql.Identifier(s, t))).fetchone()[0]
             for s, t in tables}
    paths = settings.paths()
    for root in (paths.outbox_dir, paths.reports_dir, paths.docs_dir):
        for path in (p for p in root.rglob("*") if p.is_file()):
            state[str(path)] = hashlib.md5(path.read_bytes()).hexdigest()
    conn.rollback()
    return state


@pytest.fixture
def estate(conn, crm_dirs, monkeypatch):
    monkeypatch.delenv("BREVO_API_KEY", raising=False)
    _estate(conn)
    assert _leftovers(conn, (ADDRESS,)) and _files_mentioning(["Zuckerstein"])  # the test has teeth
    conn.rollback()
    return conn


@pytest.fixture
def rebuilt(monkeypatch):
    """Data Docs rebuilds recorded instead of run (Great Expectations is slow to import)."""
    calls = []
    monkeypatch.setattr(erase, "_rebuild_data_docs", lambda: calls.append(1) or True)
    return calls


def _brevo_env(monkeypatch, server, key=None):
    monkeypatch.setenv("BREVO_API_KEY", key or server.fake.api_key)
    monkeypatch.setenv("BREVO_API_URL", server.url)


def test_erase_by_email_leaves_only_a_hash_everywhere(estate, monkeypatch, capsys, rebuilt):
    neighbour_before = estate.execute("SELECT c.nom, c.email, e.html FROM etl.clients c JOIN crm.email_sends e USING (client_code) "
                                      "WHERE client_code = %s", (NEIGHBOUR,)).fetchone()
    token = estate.execute("SELECT unsubscribe_token FROM crm.email_sends WHERE client_code = %s", (PERSON,)).fetchone()[0]
    estate.rollback()
    with FakeBrevoServer() as server:
        server.fake.contacts.update({ADDRESS, OLD_ADDRESS, "client1@example.fr"})
        _brevo_env(monkeypatch, server)
        assert main(["erase", "--email", TYPED]) == 0
    out = capsys.readouterr().out

    assert _leftovers(estate) == []
    assert _files_mentioning([ADDRESS, OLD_ADDRESS, "Zuckerstein", "Hildegarde", token]) == []
    assert rebuilt == [1]  # a Data Docs page went: the site index is rebuilt
    assert sorted(server.fake.deleted_contacts) == sorted([ADDRESS, OLD_ADDRESS])
    assert server.fake.contacts == {"client1@example.fr"}
    assert sorted(estate.execute("SELECT email, reason, source FROM crm.suppressions").fetchall()) == sorted([
        (erase.erased_marker(ADDRESS), "erased", "privacy_erase"),
        (erase.erased_marker(OLD_ADDRESS), "erased", "privacy_erase")])
    function = estate.execute("SELECT pg_get_functiondef('crm.email_blocked_reason'::regproc)").fetchone()[0]
    if "erased:" in function:  # migration 011 teaches the check the erased form
        assert estate.execute("SELECT crm.email_blocked_reason(NULL, %s, 0, NULL)", (TYPED,)).fetchone()[0] == "suppressed"
    # what is kept: the customer row (anonymised, so sales still join), the sales lines, the ledger row
    assert estate.execute("SELECT nom, prenom, email, telephone, adresse, ville, opt_out, email_valid FROM etl.clients "
                          "WHERE client_code = %s", (PERSON,)).fetchone() == (None,) * 6 + (True, False)
    assert estate.execute("SELECT count(*), count(email), count(ville) FROM etl.ventes_lignes WHERE client_code = %s",
                          (PERSON,)).fetchone() == (2, 0, 0)
    assert estate.execute("SELECT status, email, html, subject, products, unsubscribe_token FROM crm.email_sends "
                          "WHERE client_code = %s", (PERSON,)).fetchone() == ("simulated", None, None, None, None, None)
    for table in ("crm.recommendations", "crm.webhook_events", "crm.automation_actions", "crm.customer_tags"):
        assert estate.execute(f"SELECT to_regclass('{table}') IS NULL OR "
                              f"NOT EXISTS (SELECT 1 FROM {table} WHERE client_code = %s)", (PERSON,)).fetchone()[0]
    # the consent history ends with the erasure's opt-out, without an address
    assert estate.execute("SELECT email, change, source, channel FROM crm.consent_log WHERE client_code = %s",
                          (PERSON,)).fetchall() == [(None, "opt_out", "privacy_erase", "all")]
    assert estate.execute("SELECT raw_values ->> 'client_code' FROM etl.quarantine").fetchall() == [(NEIGHBOUR,)]
    assert estate.execute("SELECT decision_note FROM crm.campaigns").fetchone()[0] == "checked with [erased]"
    # someone else is untouched, their e-mail still in the outbox
    assert estate.execute("SELECT c.nom, c.email, e.html FROM etl.clients c JOIN crm.email_sends e USING (client_code) "
                          "WHERE client_code = %s", (NEIGHBOUR,)).fetchone() == neighbour_before
    assert list(settings.paths().outbox_dir.rglob(f"*-{NEIGHBOUR}.eml"))
    assert (settings.paths().reports_dir / "summary.json").exists()
    # the summary: per table, files, Brevo — and nothing personal beyond what was typed
    assert "etl.clients" in out and "anonymised" in out and "crm.recommendations" in out and "deleted" in out
    assert f"customer records: {PERSON}" in out and f"{TYPED.lower()}: contact deleted" in out
    assert "address #2 (found from the records): contact deleted" in out and "RAW exports" in out
    assert f"-{PERSON}.eml" in out and "apercu" in out
    assert not [w for w in ("oldmail", "Riquewihr", "06 11", "rue des") if w.lower() in out.lower()], out


def test_erase_by_client_code(estate, rebuilt):
    report = erase.erase(estate, client_codes=[PERSON])
    assert report.person.client_codes == [PERSON] and sorted(report.person.addresses) == sorted([ADDRESS, OLD_ADDRESS])
    assert _leftovers(estate) == []
    assert _files_mentioning([ADDRESS, "Zuckerstein"]) == []
    brevo_contacts.delete_brevo_contacts(report, None)  # no Brevo connection: said, with the address to delete by hand
    text = erasure_report.format_summary(report)
    assert f"{OLD_ADDRESS} (found from the records; delete this contact in Brevo by hand" in text
    assert "NOT deleted: no Brevo connection" in text


def test_dry_run_changes_nothing_and_says_what_would_go(estate, monkeypatch, capsys):
    before = _snapshot(estate)
    with FakeBrevoServer() as server:
        server.fake.contacts.add(ADDRESS)
        _brevo_env(monkeypatch, server)
        assert main(["erase", "--email", TYPED, "--dry-run"]) == 0
        assert server.fake.deleted_contacts == [] and server.fake.contacts == {ADDRESS}
    out = capsys.readouterr().out
    assert "DRY RUN" in out and "would be anonymised" in out and "would be deleted" in out
    assert _snapshot(estate) == before


def test_running_twice_is_harmless_and_a_brevo_failure_is_retried(estate, monkeypatch, capsys, rebuilt):
    with FakeBrevoServer() as server:
        server.fake.contacts.add(ADDRESS)
        _brevo_env(monkeypatch, server, key="wrong-key")
        assert main(["erase", "--email", TYPED]) == 2  # the warehouse part is committed, Brevo refused
        out = capsys.readouterr().out
        assert "Run the same command again" in out and "401" in out
        assert _leftovers(estate) == [] and server.fake.contacts == {ADDRESS}
        after_first = _snapshot(estate)
        _brevo_env(monkeypatch, server)
        assert main(["erase", "--email", TYPED]) == 0
        out = capsys.readouterr().out
        assert "Nothing left to erase" in out and f"{ADDRESS}: contact deleted" in out
        assert server.fake.contacts == set()
        assert main(["erase", "--email", TYPED]) == 0
        assert f"{ADDRESS}: no contact" in capsys.readouterr().out
    assert _snapshot(estate) == after_first
    assert erase.erase(estate, client_codes=[PERSON]).found is False


def test_reapply_erasures_anonymises_whoever_the_next_export_brings_back(estate, rebuilt):
    from psycopg.types.json import Jsonb

    erase.erase(estate, [TYPED])
    assert register.reapply_erasures(estate) == 0
    # the next weekly load: the ERP still exports the person (upsert), a sale line, a rejected row
    estate.execute("""UPDATE etl.clients SET nom = 'Zuckerstein', prenom = 'Hildegarde', email = %s, opt_out = NULL,
                          email_valid = true, telephone = '06 11 22 33 44' WHERE client_code = %s""", (TYPED, PERSON))
    estate.execute("""INSERT INTO etl.ventes_lignes (document_type, document_no, client_code, date_livraison, article,
                          qty_line, mt_ht, email, code_postal, ville, file_id, source_row, loaded_run)
                      VALUES ('VENTE', 'F-300', %s, '2026-11-20', 'RIES-23', 1, 12.5, %s, '68340', 'Riquewihr', 1, 2,
                              'run_2')""", (PERSON, f" {TYPED} "))
    estate.execute("INSERT INTO etl.quarantine (file_id, run_id, dataset, file_path, row_no, expectations, reason, "
                   "raw_values) VALUES (1, 'run_2', 'clients', 'x.csv', 3, ARRAY['nom'], %s, %s)",
                   (f"line 3: nom Zuckerstein", Jsonb({"nom": "Zuckerstein", "email": TYPED})))
    assert register.reapply_erasures(estate, run_id="run_2") == 2  # run_2's sale line and quarantined row
    assert register.reapply_erasures(estate) == 1                   # and the customer row
    assert register.reapply_erasures(estate) == 0
    estate.commit()
    assert _leftovers(estate) == []
    assert estate.execute("SELECT opt_out, email_valid FROM etl.clients WHERE client_code = %s",
                          (PERSON,)).fetchone() == (True, False)


def test_an_unknown_address_or_code_erases_nothing_and_says_so(estate, capsys):
    before = _snapshot(estate)
    assert main(["erase", "--email", "nobody@nowhere.example", "--client", "NOPE-1"]) == 0
    out = capsys.readouterr().out
    assert "Nothing found" in out and "unknown client code(s): NOPE-1" in out
    assert "NOT deleted: no Brevo connection" in out
    assert _snapshot(estate) == before  # not even a suppression marker


def test_the_address_left_where_no_policy_reaches_rolls_everything_back(estate):
    estate.execute("CREATE TABLE etl.zz_search (doc tsvector)")
    estate.execute("INSERT INTO etl.zz_search VALUES (to_tsvector('simple', %s))", (ADDRESS,))
    estate.commit()
    before = _snapshot(estate)
    with pytest.raises(erase.ErasureError, match=r"etl\.zz_search\.doc"):
        erase.erase(estate, [TYPED])
    assert _snapshot(estate) == before


@pytest.mark.parametrize("column, value", [
    ("note text", "rappeler Mme au +33611223344 avant Noël"),                   # the phone, as E.164
    ("note text", "rappeler au 06 11 22 33 44"),                                # as the ERP wrote it
    ("doc name", "client Hildegarde Zuckerstein"),   # the name, in a type no policy rewrites (PostgreSQL name)
], ids=["phone-e164", "phone-as-typed", "name-not-rewritable"])
def test_a_phone_number_or_name_left_anywhere_rolls_everything_back(estate, column, value):
    """The final check looks for the person's phone numbers (every written form) and full name
    as well as the addresses, in every text-like column of every table."""
    name, kind = column.split()
    estate.execute(f"CREATE TABLE etl.zz_free ({name} {kind})")
    estate.execute(f"INSERT INTO etl.zz_free VALUES (%s::{kind})", (value,))
    estate.commit()
    before = _snapshot(estate)
    with pytest.raises(erase.ErasureError, match=rf"etl\.zz_free\.{name} \(1 row\).*rolled back"):
        erase.erase(estate, client_codes=[PERSON])
    assert _snapshot(estate) == before


def test_a_table_the_catalogue_does_not_describe_stops_the_erasure_before_anything_changes(estate):
    """A table someone added with a client code, an address and a json payload: the erasure does
    not guess (delete? keep? it may be a ledger) — it refuses, names the table, changes nothing."""
    from psycopg.types.json import Jsonb

    estate.execute("CREATE TABLE crm.zz_later (client_code text, email text, note text, payload jsonb)")
    estate.execute("INSERT INTO crm.zz_later VALUES (%s, NULL, 'vip', '{}'), (NULL, NULL, 'form', %s)",
                   (PERSON, Jsonb({"who": {"mail": TYPED}})))
    estate.commit()
    before = _snapshot(estate)
    with pytest.raises(erase.ErasureError, match=r"crm\.zz_later \(client_code, email, payload\).*catalogue"):
        erase.erase(estate, [TYPED])
    assert _snapshot(estate) == before


def test_a_shared_address_is_refused_above_the_limit(estate):
    estate.execute("UPDATE etl.clients SET email = %s WHERE client_code IN ('C000002', 'C000003')", (ADDRESS,))
    estate.commit()
    with pytest.raises(erase.ErasureError, match="3 customer records"):
        erase.erase(estate, [TYPED], max_records=2)
    assert erase.erase(estate, [TYPED], dry_run=True).person.client_codes == [PERSON, "C000002", "C000003"]


def test_python_and_sql_agree_on_the_erased_marker(conn):
    for address in ("jean@example.fr", " Jean.Dupont@Example.FR ", "o'neil+vin@domaine-alsace.fr"):
        in_sql = conn.execute(sql.SQL("SELECT " + erase.ERASED_MARKER_SQL).format(sql.Placeholder()),
                              (address,)).fetchone()[0]
        assert in_sql == erase.erased_marker(address)
        assert in_sql == "erased:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()


def test_file_matching_takes_whole_client_codes_and_decodes_emails():
    message = email.message.EmailMessage()
    message["To"] = "x@example.fr"
    message.set_content("Bonjour " + "é" * 80 + " " + ADDRESS, cte="base64")
    data = bytes(message)
    assert ADDRESS.encode() not in data  # hidden by base64
    assert files.file_mentions(Path("a.eml"), data, [ADDRESS], [], set())
    assert files.file_mentions(Path("rebuy-C1.eml"), b"", [], ["C1"], set())
    assert not files.file_mentions(Path("rebuy-C10.eml"), b"C10 and C11", [], ["C1"], set())
    assert not files.file_mentions(Path("report.html"), b"<td>1234</td>", [], ["1234"], set())  # too short to search


def test_a_contact_brevo_will_not_let_the_api_delete_is_left_to_a_person(estate, monkeypatch, capsys, rebuilt):
    """Brevo answers 405 for a contact registered with Brevo: not a bad request, not worth a
    rerun — the summary says where to delete it by hand; the other address is deleted."""
    with FakeBrevoServer() as server:
        server.fake.contacts.update({ADDRESS, OLD_ADDRESS})
        server.fake.undeletable.add(ADDRESS)
        _brevo_env(monkeypatch, server)
        assert main(["erase", "--email", TYPED]) == 2  # a person must finish the job
    out = capsys.readouterr().out
    assert f"{TYPED.lower()}: NOT deleted: Brevo does not let the API delete this contact (405" in out
    assert "delete it by hand in Brevo" in out
    assert "address #2 (found from the records): contact deleted" in out
    assert "Run the same command again" not in out  # a rerun would get the same 405
    assert server.fake.contacts == {ADDRESS} and _leftovers(estate) == []


def test_the_full_name_is_redacted_in_free_text_as_whole_words_only(estate, rebuilt):
    estate.execute("UPDATE crm.campaigns SET decision_note = %s",
                   ("Rappel : HILDEGARDE ZUCKERSTEIN a appelé ; Hildegarde Zuckersteinova aussi",))
    estate.commit()
    erase.erase(estate, [TYPED])
    assert estate.execute("SELECT decision_note FROM crm.campaigns").fetchone()[0] == (
        "Rappel : [erased] a appelé ; Hildegarde Zuckersteinova aussi")
