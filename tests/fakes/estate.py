"""A warehouse with n recommended customers, as the recommend stage leaves it, written directly
(COPY) — for campaign tests and benchmarks that need thousands of e-mails fast."""

from __future__ import annotations

import datetime as dt
import random

AS_OF = dt.date(2026, 11, 15)
WINES = [("RIES-23", "Riesling 2023", 2023, 12.5), ("GEWU-22", "Gewurztraminer 2022", 2022, 15.9),
         ("PGRI-23", "Pinot Gris 2023", 2023, 14.0), ("CREBRUT", "Crémant d'Alsace Brut", None, 11.5),
         ("RIESGC-20", "Riesling Grand Cru Schlossberg 2020", 2020, 29.0), ("PNOI-22", "Pinot Noir 2022", 2022, 16.0)]
FIRST = ["Anne", "Michel", "Kœnig", "O'Neil", "Hélène", "", "Jean-Paul", "Zoé"]


def seed_warehouse(conn, n: int, seed: int = 11) -> None:
    """n recommended customers with 1-3 wines each, as the recommend stage leaves them."""
    rng = random.Random(seed)
    conn.execute("INSERT INTO etl.file_manifest (file_id, dataset, file_path, sha256, size_bytes, file_mtime, "
                 "status, run_id) VALUES (1, 'clients', 'bench/clients.csv', repeat('0', 64), 0, now(), 'loaded', "
                 "'bench')")
    with conn.cursor().copy("COPY etl.produits (article, produit, millesime, prix_ttc, file_id, source_row, loaded_run) "
                            "FROM STDIN") as copy:
        for i, (article, name, vintage, price) in enumerate(WINES):
            copy.write_row((article, name, vintage, price, 1, i, "bench"))
    with conn.cursor().copy("COPY etl.clients (client_code, nom, prenom, email, email_valid, file_id, source_row, "
                            "loaded_run) FROM STDIN") as copy:
        for i in range(n):
            copy.write_row((f"C{i:06d}", "Nom", rng.choice(FIRST) or None, f"client{i}@example.fr", True, 1, i, "bench"))
    with conn.cursor().copy("COPY crm.recommendations (as_of_date, client_code, rank, scenario, segment, article, "
                            "produit, score, reason_fr, offer_code, is_control, buy_probability, scenario_rank, "
                            "computed_run) FROM STDIN") as copy:
        for i in range(n):
            scenario = rng.choice(["cross_sell", "rebuy", "winback"])
            for rank, (article, name, _, _) in enumerate(rng.sample(WINES, rng.randint(1, 3)), start=1):
                copy.write_row((AS_OF, f"C{i:06d}", rank, scenario, "Standard", article, name, 1.0,
                                f"Parce que vous avez aimé notre Sylvaner, nous pensons que le {name} vous plaira.",
                                "RETOUR15" if scenario == "winback" else None, False, 0.5, i + 1, "bench"))
    conn.commit()


