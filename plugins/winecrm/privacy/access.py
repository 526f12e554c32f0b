"""What we hold about one person (GDPR art. 15, access; art. 20, portability): JSON and a French letter.

    python -m winecrm.privacy export --email anne.martin@example.fr
    python -m winecrm.privacy export --client C001234 --out /tmp/acces

Why it works this way:

- **The same person, the same places as the erasure.** The person is found as the erasure
  finds them (``identity.identify``: an address leads to its client codes and back), and their
  rows are read from every table the erasure would touch (``catalogue.person_rows``): what an
  access request shows is exactly what an erasure would remove or anonymise.
- **Two files.** ``acces-<ref>-<date>.json`` holds every row as stored (machine-readable, for
  portability); ``acces-<ref>-<date>.txt`` is the letter the estate sends, in French, addressed
  to the person: identity, purchases, what we deduce from them (segment, scores, suggestions
  with their reasons — profiling must be disclosed), e-mails and SMS sent, their reactions,
  follow-up tasks, the consent history (when and from where each opt-in and opt-out came), what
  Brevo holds, and their rights.
- **Where the files go.** By default under the reports folder (``reports/acces/``), named by the
  client code: an erasure of the same person finds and removes them. They hold personal data:
  send them, then delete them.
- **Read-only.** One read-only snapshot (REPEATABLE READ): the files describe one moment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import json
from collections import Counter
from pathlib import Path

import psycopg

from winecrm.core import french, settings
from winecrm.core.french import NBSP, NNBSP
from winecrm.privacy import ErasureError, catalogue, consent, identity, schema
from winecrm.privacy import files as person_files

WRAP = 100


@dataclasses.dataclass
class AccessExport:
    person: identity.Person
    generated_at: dt.datetime
    tables: dict[str, list[dict]]
    consent: list[dict]
    files: list[str]                              # paths of files about the person (e-mails kept, reports)
    sms_lines: list[dict]                         # SMS outbox lines about them
    brevo: dict[str, dict | str]                  # address -> contact details | "not_found" | "no_connection" | "error: …"

    @property
    def found(self) -> bool:
        return any(self.tables.values()) or bool(self.consent or self.files or self.sms_lines) or any(
            isinstance(v, dict) for v in self.brevo.values())

    @property
    def reference(self) -> str:
        """The files' name: the first client code, else a short hash of the address (never the address)."""
        if self.person.client_codes:
            return self.person.client_codes[0]
        typed = ",".join(self.person.typed_addresses) or "inconnu"
        return hashlib.sha256(typed.encode("utf-8")).hexdigest()[:10]

    def as_json(self) -> dict:
        return {"generated_at": self.generated_at, "client_codes": self.person.client_codes,
                "email_addresses": self.person.addresses, "warehouse": self.tables, "consent_history": self.consent,
                "sms_outbox": self.sms_lines, "files": self.files, "brevo": self.brevo}


def collect(conn: psycopg.Connection, emails: list[str] = (), client_codes: list[str] = (), *, brevo=None,
            with_files: bool = True) -> AccessExport:
    """Everything held about the person known by ``emails`` and/or ``client_codes``.
    ``brevo``: a Brevo client (its contact details are asked for each address), or None."""
    emails, client_codes = list(emails), list(client_codes)
    bad = [e for e in emails if "@" not in e]
    if bad or not (emails or client_codes):
        raise ErasureError(f"an e-mail address is needed, got {bad[0]!r}" if bad else "give --email or --client")
    conn.rollback()
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    # Before the snapshot (the first query fixes it): a load re-delivering the whole sales history
    # empties the table and refills it in one transaction, which an older snapshot would see empty.
    conn.execute("LOCK TABLE etl.ventes_lignes IN ACCESS SHARE MODE")
    try:
        tables = schema.catalog(conn)
        person = identity.identify(conn, tables, emails, client_codes, max_records=1_000)
        identity._person_details(conn, tables, person)  # their phone numbers, for the SMS outbox
        rows = catalogue.person_rows(conn, person)
        history = consent.consent_history(conn, person.client_codes, person.addresses)
        generated_at = conn.execute("SELECT now()").fetchone()[0]
    finally:
        conn.rollback()
    files, sms_lines = [], []
    if with_files:
        tokens = {r["unsubscribe_token"] for r in rows.get(schema.SEND_LEDGER, []) if r.get("unsubscribe_token")}
        paths = {r["outbox_path"] for r in rows.get(schema.SEND_LEDGER, []) if r.get("outbox_path")}
        found = person_files.find_files(person, tokens, paths)
        sms_root = person_files.sms_outbox_dir()
        files = [str(p) for p in found if not person_files._under(p, sms_root)]
        sms_lines = _sms_lines(person, {r["action_id"] for r in rows.get("crm.automation_actions", [])}, sms_root)
    brevo_details: dict[str, dict | str] = {}
    for address in person.addresses:
        if brevo is None:
            brevo_details[address] = "no_connection"
            continue
        try:
            details = brevo.get_contact(address)
        except Exception as exc:  # noqa: BLE001 - the warehouse part is still the answer; the letter says so
            brevo_details[address] = f"error: {exc}"
            continue
        brevo_details[address] = details if details is not None else "not_found"
    return AccessExport(person, generated_at, rows, history, files, sms_lines, brevo_details)


def _sms_lines(person: identity.Person, action_ids: set[int], folder: Path) -> list[dict]:
    """The dry-run SMS outbox's lines about the person (the lines an erasure would remove)."""
    found = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and person_files._sms_line_about(line, set(person.phones), action_ids, person.client_codes):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    found.append({"line": line})
    return found


# --------------------------------------------------------------------------------------------
# the files


def _json_default(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, memoryview | bytes):
        return bytes(value).hex()
    return str(value)


def write(export: AccessExport, out_dir: Path | None = None) -> tuple[Path, Path]:
    """The JSON and the French letter, written atomically; returns their paths."""
    out_dir = out_dir or settings.paths().reports_dir / "acces"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"acces-{export.reference}-{export.generated_at:%Y-%m-%d}"
    written = []
    for suffix, text in ((".json", json.dumps(export.as_json(), ensure_ascii=False, indent=2, default=_json_default)),
                         (".txt", letter_fr(export))):
        path = out_dir / f"{stem}{suffix}"
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written[0], written[1]


# --------------------------------------------------------------------------------------------
# the letter (French: what the person reads)


SOURCES_FR = {
    "erp_export": "fiche client de notre logiciel de cave",
    "unsubscribe_link": "lien de désinscription d'un de nos e-mails",
    "privacy_erase": "effacement de vos données à votre demande",
    "manual": "saisie par le domaine",
}
CHANGES_FR = {"opt_in": "accord", "opt_out": "retrait", "paused": "pause des envois"}
CHANNELS_FR = {"email": "e-mails", "sms": "SMS", "all": "e-mails et SMS"}
SUPPRESSION_FR = {"unsubscribed": "désinscription", "hard_bounce": "adresse qui n'existe plus",
                  "spam": "signalement comme indésirable", "erased": "effacement", "invalid_email": "adresse invalide",
                  "manual": "à la demande du domaine"}
SCENARIOS_FR = {"rebuy": "un vin que vous avez déjà aimé", "cross_sell": "un vin à découvrir",
                "winback": "une offre de retour"}
SEND_STATUS_FR = {"sent": "envoyé", "simulated": "préparé, jamais envoyé (essai)", "skipped": "non envoyé",
                  "failed": "non envoyé (erreur)", "rendered": "préparé", "sending": "en cours d'envoi"}
EVENTS_FR = {"delivered": "reçu", "opened": "ouvert", "click": "lien cliqué", "clicked": "lien cliqué",
             "hard_bounce": "adresse en échec", "soft_bounce": "remise différée", "unsubscribed": "désinscription",
             "spam": "signalé comme indésirable", "purchase": "achat", "order": "achat"}


def _colon(label: str) -> str:
    return f"{label}{NBSP}:"


def _latest(rows: list[dict], key: str = "as_of_date") -> list[dict]:
    if not rows:
        return []
    newest = max(r.get(key) for r in rows if r.get(key) is not None) if any(r.get(key) for r in rows) else None
    return [r for r in rows if r.get(key) == newest]


def _source_fr(row: dict) -> str:
    source = str(row.get("source") or "")
    if source.startswith("brevo_webhook"):
        event = source.split(":", 1)[1] if ":" in source else ""
        return "notre prestataire d'envoi Brevo" + (f" ({EVENTS_FR.get(event, event)})" if event else "")
    if source.startswith("rule:"):
        return "règle automatique du domaine"
    text = SOURCES_FR.get(source, source)
    if row.get("source_file"):
        text += f" (fichier {Path(str(row['source_file'])).name})"
    return text


def _change_fr(change: str) -> str:
    if change.startswith("suppressed:"):
        reason = change.split(":", 1)[1]
        return f"plus aucun envoi ({SUPPRESSION_FR.get(reason, reason)})"
    return CHANGES_FR.get(change, change)


def letter_fr(export: AccessExport) -> str:
    """The French letter the estate sends to the person (French spacing applied to it all, here)."""
    return french.spacing(_letter(export))


def _letter(export: AccessExport) -> str:
    estate = settings.campaigns_config().estate
    t = export.tables
    lines = [f"Vos données personnelles détenues par {estate.name}",
             f"Réponse à votre demande d'accès (RGPD, articles 15 et 20), établie le {french.date(export.generated_at)}.", ""]
    if not export.found:
        lines += ["Nous ne détenons aucune donnée à votre sujet : ni fiche client, ni achat, ni e-mail, ni événement,",
                  "ni contact chez notre prestataire d'envoi.", ""]
        lines += _rights(estate)
        return "\n".join(lines)

    clients = t.get(schema.CUSTOMER_MASTER, [])
    lines.append(_colon("Qui vous êtes pour nous"))
    for c in clients:
        identity = ", ".join(str(v) for v in (" ".join(str(x) for x in (c.get("prenom"), c.get("nom")) if x),
                                                c.get("email"), c.get("telephone"), c.get("adresse"),
                                                " ".join(str(x) for x in (c.get("code_postal"), c.get("ville")) if x),
                                                c.get("pays")) if v)
        lines.append(f"  - fiche client {c['client_code']}{NBSP}: {identity or 'aucune coordonnée (effacées)'}")
        if c.get("opt_out") is not None:
            lines.append("    e-mails du domaine" + NBSP + ": " + ("refusés" if c["opt_out"] else "acceptés"))
    if not clients:
        lines.append("  - aucune fiche client")
    lines.append("")

    sales = t.get("etl.ventes_lignes", [])
    if sales:
        dates = [r["date_livraison"] for r in sales if r.get("date_livraison")]
        documents = {(r.get("document_type"), r.get("document_no")) for r in sales}
        ttc = sum(decimal.Decimal(str(r.get("mt_ttc") or 0)) for r in sales)
        lines.append(_colon("Vos achats"))
        lines.append(f"  {french.plural(len(documents), 'document de vente', 'documents de vente')} "
                     f"({french.plural(len(sales), 'ligne', 'lignes')}), du {french.date(min(dates) if dates else None)} au "
                     f"{french.date(max(dates) if dates else None)}, pour {french.euros(ttc or 0)} TTC au total.")
        lines.append("")

    profile = []
    for r in _latest(t.get("crm.rfm_scores", [])):
        profile.append(f"  - groupe de clients{NBSP}: {r.get('segment')} (au {french.date(r.get('as_of_date'))}, d'après "
                       "la date, le nombre et le montant de vos achats)")
    for r in _latest(t.get("crm.lead_scores", [])):
        score = round(decimal.Decimal(str(r.get("score") or 0)))
        profile.append(f"  - intérêt estimé pour nos envois{NBSP}: {score} sur 100 "
                       f"(au {french.date(r.get('as_of_date'))})")
    for r in _latest(t.get("crm.buy_probabilities", [])):
        percent = f"{decimal.Decimal(str(r.get('probability') or 0)) * 100:.0f}".replace(".", ",")
        profile.append(f"  - chance estimée d'un achat dans les {r.get('horizon_days')} jours{NBSP}: "
                       f"{percent}{NNBSP}% (au {french.date(r.get('as_of_date'))})")
    if profile:
        lines.append(_colon("Ce que nous en déduisons (profil calculé chaque semaine)"))
        lines += profile
        lines.append("")

    recos = [r for r in _latest(t.get("crm.recommendations", [])) if not r.get("is_control")]
    if recos:
        lines.append(_colon(f"Nos suggestions de vins pour vous (au {french.date(recos[0].get('as_of_date'))})"))
        for r in sorted(recos, key=lambda r: r.get("rank") or 0):
            lines.append(f"  - {r.get('produit') or r.get('article')} — {SCENARIOS_FR.get(r.get('scenario'), '')}"
                         f"{NBSP}: « {r.get('reason_fr')} »")
        lines.append("")

    sends = t.get(schema.SEND_LEDGER, [])
    if sends:
        lines.append(_colon("E-mails du domaine"))
        for r in sorted(sends, key=lambda r: str(r.get("sent_at") or r.get("as_of_date") or "")):
            when = french.date(r.get("sent_at") or r.get("as_of_date"))
            subject = f" « {r['subject']} »" if r.get("subject") else ""
            lines.append(f"  - {when}{subject}{NBSP}: {SEND_STATUS_FR.get(r.get('status'), r.get('status'))}")
        lines.append("")

    sms_actions = [r for r in t.get("crm.automation_actions", []) if r.get("action_type") == "send_sms"]
    if sms_actions or export.sms_lines:
        lines.append(_colon("SMS"))
        for r in sms_actions:
            lines.append(f"  - {french.date(r.get('done_at') or r.get('due_at'))}{NBSP}: "
                         f"{'envoyé' if r.get('status') == 'done' else 'non envoyé'}")
        if export.sms_lines:
            lines.append(f"  - {french.plural(len(export.sms_lines), 'SMS préparé', 'SMS préparés')} sans être envoyé (essai)")
        lines.append("")

    events = Counter(EVENTS_FR.get(r.get("event"), r.get("event")) for r in t.get("crm.webhook_events", []))
    if events:
        lines.append(_colon("Vos réactions à nos e-mails, telles que nous les recevons"))
        lines.append("  " + ", ".join(f"{label}{NBSP}: {n}" for label, n in sorted(events.items())))
        lines.append("")

    tasks = t.get("crm.tasks", [])
    tags = t.get("crm.customer_tags", [])
    if tasks or tags:
        lines.append(_colon("Suivi par le domaine"))
        for r in tasks:
            lines.append(f"  - {r.get('title')} (prévu le {french.date(r.get('due_at'))})")
        if tags:
            lines.append(f"  - étiquettes{NBSP}: " + ", ".join(sorted({str(r.get('tag')) for r in tags})))
        lines.append("")

    suppressions = t.get(schema.SUPPRESSIONS, [])
    lines.append(_colon("Votre consentement, dans l'ordre où il nous est parvenu"))
    for r in export.consent:
        lines.append(f"  - {french.date(r.get('event_at') or r.get('changed_at'))}{NBSP}: {_change_fr(str(r.get('change')))}"
                     f" ({CHANNELS_FR.get(r.get('channel'), r.get('channel'))}), source{NBSP}: {_source_fr(r)}")
    if not export.consent:
        lines.append("  - aucun changement enregistré")
    for r in suppressions:
        lines.append(f"  - adresse exclue de tout envoi depuis le {french.date(r.get('created_at'))} "
                     f"({SUPPRESSION_FR.get(r.get('reason'), r.get('reason'))})")
    lines.append("")

    lines.append(_colon("Chez notre prestataire d'envoi d'e-mails (Brevo)"))
    for address, details in export.brevo.items():
        if isinstance(details, dict):
            lists = details.get("listIds") or []
            lines.append(f"  - {address}{NBSP}: contact créé le {french.date(details.get('createdAt'))}, "
                         f"{french.plural(len(lists), 'liste', 'listes')} de diffusion, e-mails "
                         f"{'bloqués' if details.get('emailBlacklisted') else 'acceptés'}")
        elif details == "not_found":
            lines.append(f"  - {address}{NBSP}: aucun contact")
        else:
            lines.append(f"  - {address}{NBSP}: non consulté ({'pas de connexion à Brevo' if details == 'no_connection' else 'erreur'})"
                         " — le domaine le vérifie dans Brevo")
    lines.append("")
    if export.files:
        lines.append(f"Fichiers{NBSP}: {french.plural(len(export.files), 'fichier vous concerne', 'fichiers vous concernent')} "
                     "(e-mails enregistrés, rapports)" + NBSP + "; leur liste est dans le fichier JSON joint.")
        lines.append("")
    lines.append("Le détail complet, tel que nous le conservons, figure dans le fichier JSON joint.")
    lines.append("")
    lines += _rights(estate)
    return "\n".join(lines)


def _rights(estate) -> list[str]:
    return [_colon("Vos droits"),
            "  Vous pouvez demander la correction de ces données, leur effacement, ou vous opposer à nos envois ;"
            .replace(" ;", NNBSP + ";"),
            f"  il suffit de répondre à ce message ou d'écrire à {estate.reply_to}. Vous pouvez aussi adresser une",
            "  réclamation à la CNIL (www.cnil.fr).",
            "",
            f"{estate.name} — {estate.address}"]
