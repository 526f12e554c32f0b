"""How the estate's people read the campaigns' internal keys: one French name for each
scenario, e-mail status and reason for leaving a customer out. The weekly report and the
approval request both name them from here (no module imports beyond the standard library)."""

from __future__ import annotations

SCENARIOS_FR = {"cross_sell": "Découverte (cross-sell)", "rebuy": "Réachat", "winback": "Reconquête"}
STATUS_FR = {"sent": "envoyés", "simulated": "simulés (outbox)", "skipped": "écartés", "failed": "en échec",
             "rendered": "prêts, non envoyés", "sending": "envoi en cours"}
REASONS_FR = {"control_group": "groupe témoin", "invalid_email": "adresse invalide", "suppressed": "désinscrit / bloqué",
              "opted_out": "opposition (opt-out)", "silence_window": "contacté récemment",
              "winback_min_revenue": "CA < seuil de reconquête", "no_candidate": "aucun vin à proposer",
              "no_longer_recommended": "plus recommandé"}


def scenario_fr(scenario: str) -> str:
    """« Reconquête » for ``winback``; a scenario without a French name keeps its key."""
    return SCENARIOS_FR.get(scenario, scenario)


def reason_fr(reason: str) -> str:
    return REASONS_FR.get(reason, reason)


CAMPAIGN_STATUS_FR = {"rendered": "en attente de décision", "approved": "approuvée", "rejected": "refusée, rien n'est parti",
                      "sending": "envoi en cours", "done": "terminée"}


def person_name(who: object) -> str | None:
    """Who decided, as people read it: the name of the Airflow user (the approval form gives
    ``{"id": …, "name": …}``), else its id. Rows written before the name was kept hold the
    user's dict as text (« {'id': 'admin', 'name': 'admin'} »): read the same way."""
    import ast

    if isinstance(who, str) and who.lstrip().startswith("{"):
        try:
            who = ast.literal_eval(who.strip())
        except (ValueError, SyntaxError):
            pass
    if isinstance(who, dict):
        who = who.get("name") or who.get("id")
    if who is None:
        return None
    return str(who).strip() or None
