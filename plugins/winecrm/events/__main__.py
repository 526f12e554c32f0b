"""``python -m winecrm.events``: the receiver, the queue processor and the rule explainer.

* ``serve`` (``make webhooks``): the public receiver on ``CRM_WEBHOOK_HOST``:``CRM_WEBHOOK_PORT``
  (default 127.0.0.1:8765), one uvicorn worker;
* ``process``: one ``crm_events`` run outside Airflow (queue -> rules -> actions);
* ``explain EVENT.json``: which rules and actions an event would fire, applying nothing;
* ``check-rules``: validate ``automation_rules.yaml`` (``CRM_AUTOMATION_RULES``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m winecrm.events", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the receiver")
    serve.add_argument("--host", default=os.environ.get("CRM_WEBHOOK_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("CRM_WEBHOOK_PORT", "8765")))
    sub.add_parser("process", help="process the queue once (what the crm_events DAG runs)")
    explain = sub.add_parser("explain", help="which rules an event would fire (applies nothing)")
    explain.add_argument("event_file", help="a JSON file: a Brevo event (or array), or a behaviour event")
    explain.add_argument("--segment", choices=("VIP", "Standard", "At Risk", "Churn", "Unknown"))
    explain.add_argument("--score", type=float)
    explain.add_argument("--tags", help="comma-separated")
    explain.add_argument("--no-db", action="store_true", help="do not read the customer from the warehouse")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("check-rules", help="validate the rules file")
    args = parser.parse_args(argv)

    from winecrm.core import settings
    from winecrm.events.rules import load_rules, rules_path

    if args.command == "serve":
        import uvicorn

        from winecrm.core import db
        from winecrm.events.receiver import ReceiverMisconfigured, create_app, receiver_auth

        try:
            auth = receiver_auth()
        except ReceiverMisconfigured as exc:
            print(f"the receiver does not start: {exc}", file=sys.stderr)
            return 2

        if db.embedded_allowed():  # a local try-out (make webhooks): the embedded warehouse gets its tables
            from winecrm.core.migrations import apply_migrations

            with db.connect(application_name="winecrm-receiver") as conn:
                apply_migrations(conn)

        uvicorn.run(create_app(auth), host=args.host, port=args.port, log_level="info", access_log=False)
        return 0
    try:
        rules = load_rules()
    except (settings.ConfigError, OSError) as exc:
        print(f"rules not valid: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-rules":
        active = rules.active()
        print(f"{rules_path()}: {len(rules.rules)} rules, {len(active)} enabled: "
              + ", ".join(f"{r.id} ({r.trigger}, {r.priority})" for r in active))
        return 0
    if args.command == "explain":
        from winecrm.events.explain import explain as run_explain, format_explanation, load_json

        conn = None
        if not args.no_db:
            try:
                from winecrm.core import db

                conn = db.connect(application_name="winecrm-explain")
            except Exception as exc:  # the explanation still helps without the customer's context
                print(f"(warehouse not reachable: {exc.__class__.__name__}; customer context unknown)", file=sys.stderr)
        context = {"segment": args.segment, "score": args.score,
                   "tags": [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else None}
        try:
            result = run_explain(load_json(args.event_file), rules, context, conn,
                                 settings.scoring_config().lead_score.engagement_cap)
        except (ValueError, OSError) as exc:
            print(str(exc), file=sys.stderr)
            return 2
        finally:
            if conn is not None:
                conn.close()
        print(json.dumps(result, indent=2, default=str, ensure_ascii=False) if args.json
              else format_explanation(result))
        return 0
    # process
    from winecrm.campaigns import brevo
    from winecrm.core import db
    from winecrm.core.migrations import apply_migrations
    from winecrm.events.processing import process_events

    client = brevo.configured_client(brevo.credentials_from_env())
    with db.connect(application_name="winecrm-events") as conn:
        apply_migrations(conn)
        summary = process_events(conn, rules=rules, brevo=client)
    print(json.dumps(summary, indent=2, default=str, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
