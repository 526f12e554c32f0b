"""What people read about a run: its one-line French note (the run list, the run's page),
and the French lines about consent, the campaign and documents kept incomplete."""

from __future__ import annotations

from decimal import Decimal

from winecrm.core import french
from winecrm.core.weeks import Week

def run_note(summary: dict) -> str:
    """« Semaine du 09/11 au 15/11/2026 : 1 nouveau fichier, 507 lignes lues, 6 écrites, 501 ignorées
    (déjà à jour), 0 en quarantaine » — what Airflow's run list shows for the run (its note)."""
    week = Week(summary["week_start"], summary["week_end"]).label_fr()
    counts = ", ".join([
        french.plural(summary["files_new"], "nouveau fichier", "nouveaux fichiers")
        + (" (exports de la semaine déjà lus par un autre run)" if summary.get("week_read_before") else ""),
        french.plural(summary["rows_read"], "ligne lue", "lignes lues"),
        french.plural(summary["rows_written"], "écrite"),
        french.plural(summary["rows_skipped"], "ignorée") + " (déjà à jour)",
        f"{french.number(summary['rows_quarantined'])} en quarantaine",
        *incomplete_documents_fr(((summary.get("details") or {}).get("load") or {}).get("ventes_lignes", {})
                                 .get("incomplete_documents")),
    ])
    consent = consent_note(summary.get("details") or {})
    if consent:  # a narrow no-break space before the semicolon (FRENCH-COPY.md)
        counts += f"\u202f; {consent}"
    campaign = _campaign_note(summary.get("details") or {})
    if campaign:
        counts += f" ; {campaign}"
    if summary.get("status") == "failed":
        reason = (summary.get("error") or "").strip().splitlines()[0] if summary.get("error") else "voir le journal"
        if len(reason) > 220:
            reason = reason[:217] + "…"
        return f"{week} : ÉCHEC — {reason} ({counts})"
    return f"{week} : {counts}"


def consent_note(details: dict) -> str:
    """« Consentements : 3 retraits, 1 accord (export ERP) » when the run's clients load changed
    some customers' consent (crm.consent_log), else ''."""
    from winecrm.privacy.consent import summary_fr

    return summary_fr(((details.get("load") or {}).get("clients") or {}).get("consent"))


def _campaign_note(details: dict) -> str:
    """What became of the week's e-mails, in the run note: sent, written to the outbox only, or a
    send that was asked and refused (a past week)."""
    render, send = details.get("render") or {}, details.get("send") or {}
    if not render:
        return ""
    sent = send.get("by_status") or {}
    if render.get("mode") == "live":
        if not send:
            return "campagne en attente d'approbation"
        return f"campagne envoyée : {french.plural(sent.get('sent', 0), 'e-mail')}"
    written = french.plural(sent.get("simulated", 0), "e-mail") + " dans la boîte d'envoi, rien n'est parti"
    if render.get("live_refused"):
        return f"envoi refusé : semaine passée (un rattrapage n'envoie jamais), {written}"
    return f"campagne à blanc : {written}" if send else "campagne à blanc"


def incomplete_documents_fr(incomplete: dict | None) -> list[str]:
    """What the load did with sales documents delivered with lines in quarantine, for the run's
    note: « 1 document gardé dans sa version précédente (1 ligne valide non chargée, 1 en
    quarantaine) », « 1 document chargé incomplet (2 lignes en quarantaine) », « fichier
    accepté : 3 lignes et 245,50 € HT de moins que l'ancienne version ». Nothing when all is well."""
    if not incomplete:
        return []
    said = []
    held, new, replaced = incomplete["held_back"], incomplete["loaded_new"], incomplete["accepted_replaced"]
    if held["documents"]:
        one = held["documents"] == 1
        said.append(f"{french.number(held['documents'])} document{'' if one else 's'} gardé{'' if one else 's'} dans "
                    f"{'sa' if one else 'leur'} version précédente ("
                    f"{french.plural(held['good_lines'], 'ligne valide non chargée', 'lignes valides non chargées')}, "
                    f"{french.number(held['quarantined_lines'])} en quarantaine)")
    if new["documents"]:
        one = new["documents"] == 1
        said.append(f"{french.number(new['documents'])} document{'' if one else 's'} chargé{'' if one else 's'} "
                    f"incomplet{'' if one else 's'} ({french.plural(new['quarantined_lines'], 'ligne')} en quarantaine)")
    if replaced["documents"]:
        which = "fichier accepté" if len(replaced["files"]) < 2 else "fichiers acceptés"
        less = []
        if replaced["lines_removed"] > 0:
            less.append(french.plural(replaced["lines_removed"], "ligne"))
        if replaced["mt_ht_removed"] > 0:
            less.append(f"{french.euros(Decimal(str(replaced['mt_ht_removed'])))}\u00a0HT")
        if less:
            said.append(f"{which}\u00a0: {' et '.join(less)} de moins que l'ancienne version")
        else:
            said.append(f"{which}\u00a0: {french.plural(replaced['documents'], 'document')} remplacé"
                        f"{'' if replaced['documents'] == 1 else 's'} malgré "
                        f"{french.plural(replaced['quarantined_lines'], 'ligne')} en quarantaine")
    return said
