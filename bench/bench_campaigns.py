"""Benchmark of the campaign path: render 10,000 e-mails, then send them to a local fake Brevo.

    python bench/bench_campaigns.py               # make bench-campaigns

1. Templates alone, in one run: ours (templates compiled once per process, one CSS inliner)
   against a naive render (a new Jinja environment, template compilation and inliner for every
   e-mail) — the same 10,000 contexts.
2. The render stage on a warehouse: 10,000 recommended customers (1–3 wines each) written into
   ``crm.recommendations`` / ``etl.clients``; ``render_campaign`` reads them, renders and writes
   the ledger (target ≤ 20 s).
3. The live send of those e-mails to the fake Brevo over real HTTP on loopback, approved, in
   batches of 1,000 (target ≤ 60 s in ≤ 100 HTTP requests for the transactional send), and the
   dry run of the same to the outbox folder for comparison.

Uses CRM_BENCH_DATABASE_URL if set, else an embedded PostgreSQL under bench/out/. Writes
bench/out/results-campaigns.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"

from bench_load import machine  # noqa: E402

from tests.fakes.estate import AS_OF, FIRST, WINES  # noqa: E402


def contexts(n: int, seed: int = 7) -> list[dict]:
    from winecrm.core import settings

    cfg = settings.campaigns_config()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prenom = rng.choice(FIRST)
        scenario = rng.choice(["cross_sell", "rebuy", "winback"])
        wines = rng.sample(WINES, rng.randint(1, 3))
        out.append((scenario, {
            "estate": cfg.estate, "prenom": prenom, "greeting": f"Bonjour {prenom}," if prenom else "Bonjour,",
            "preview": "Nos vins pour vous", "offer_code": "RETOUR15" if scenario == "winback" else "",
            "discount_pct": 15 if scenario == "winback" else "",
            "links": {"home": "https://www.domaine-exemple.fr/?utm_source=brevo",
                      "shop": "https://www.domaine-exemple.fr/boutique?utm_source=brevo",
                      "unsubscribe": f"https://crm.domaine-exemple.fr/desinscription/tok{i}"},
            "products": [{"name": name, "format_fr": None, "price": f"{price:.2f} €".replace(".", ","),
                          "reason": f"Parce que vous avez aimé notre Sylvaner, nous pensons que le {name} vous plaira.",
                          "url": f"https://www.domaine-exemple.fr/boutique/{art}?utm_source=brevo"}
                         for art, name, _, price in wines]}))
    return out


def naive_render(template: str, context: dict) -> str:
    """What rendering costs without any reuse: environment, compilation and inliner per e-mail."""
    import css_inline
    import jinja2
    import mrml

    from winecrm.campaigns import templates

    loader = jinja2.FileSystemLoader(str(templates.templates_dir()))
    env = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True, cache_size=0)
    subject = templates.one_line(jinja2.Environment().from_string("{{ prenom }}, pour vous").render(**context))
    html = mrml.to_html(env.get_template(f"{template}.mjml.j2").render(subject=subject, **context)).content
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False).inline(html)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=2_000, help="e-mails rendered the naive way (then scaled)")
    args = parser.parse_args()
    import psycopg

    from tests.fakes.brevo import FakeBrevoServer
    from tests.fakes.estate import seed_warehouse
    from winecrm.campaigns import brevo, render, send, templates
    from winecrm.core import db, settings
    from winecrm.core.migrations import apply_migrations

    results: dict = {"machine": machine(), "emails": args.emails}
    items = contexts(args.emails)
    t = time.perf_counter()
    for scenario, context in items:
        templates.render(scenario, context)
    results["templates_ours_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    for scenario, context in items[:args.naive]:
        naive_render(scenario, context)
    naive = time.perf_counter() - t
    results["templates_naive_s_for_all"] = round(naive * args.emails / args.naive, 2)
    results["templates_naive_measured"] = f"{args.naive} e-mails in {naive:.2f} s, scaled to {args.emails}"
    results["templates_speedup"] = round(results["templates_naive_s_for_all"] / results["templates_ours_s"], 2)
    print(json.dumps(results, indent=1), flush=True)

    admin = os.environ.get("CRM_BENCH_DATABASE_URL") or db.embedded_server_url(data_dir=OUT / "pg", db_name="postgres")
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    outbox = OUT / "outbox"
    shutil.rmtree(outbox, ignore_errors=True)
    try:
        with psycopg.connect(url) as conn:
            apply_migrations(conn)
            seed_warehouse(conn, args.emails)
            cfg = settings.campaigns_config()
            t = time.perf_counter()
            rendered = render.render_campaign(conn, "bench", AS_OF, mode="live", cfg=cfg)
            results["render_stage_s"] = round(time.perf_counter() - t, 2)
            results["render_stage_template_s"] = rendered["template_seconds"]
            results["rendered"] = rendered["by_status"]
            # the dry run of the same week (rendered and written before the live one is sent: once
            # sent, the customers are inside the silence window)
            dry = render.render_campaign(conn, "bench", AS_OF, mode="dry_run", cfg=cfg)
            t = time.perf_counter()
            send.send_campaign(conn, dry["campaign_id"], outbox=outbox, cfg=cfg)
            results["send_dry_run_s"] = round(time.perf_counter() - t, 2)
            results["outbox_mb"] = round(sum(p.stat().st_size for p in outbox.rglob("*.eml")) / 2**20, 1)
            conn.execute("UPDATE crm.campaigns SET status = 'approved', decided_by = 'bench'")
            conn.commit()
            with FakeBrevoServer() as server:
                client = brevo.BrevoClient(brevo.BrevoCredentials(server.fake.api_key, server.url), timeout=60)
                t = time.perf_counter()
                sent = send.send_campaign(conn, render.campaign_id_for(AS_OF), client=client, cfg=cfg)
                results["send_live_s"] = round(time.perf_counter() - t, 2)
                results["send_http_requests"] = len(server.fake.requests)
                results["send_accepted"] = len(server.fake.sent)
                results["send_accepted_distinct"] = len(set(server.fake.accepted_addresses()))
                results["sent"] = sent["by_status"]
            results["ledger_mb"] = round(conn.execute(
                "SELECT pg_total_relation_size('crm.email_sends')").fetchone()[0] / 2**20, 1)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(json.dumps(results, indent=1))
    OUT.mkdir(exist_ok=True)
    (OUT / "results-campaigns.json").write_text(json.dumps(results, indent=1))
    ok = results["render_stage_s"] <= 20 and results["send_live_s"] <= 60 and results["send_http_requests"] <= 100 \
        and results["send_accepted"] == results["send_accepted_distinct"] == args.emails
    print("targets:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
