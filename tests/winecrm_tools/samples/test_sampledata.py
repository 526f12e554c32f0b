"""The sample estate: deterministic, realistic, messy in the ways real exports are."""

from __future__ import annotations

import hashlib

from winecrm_tools.samples import sampledata
from winecrm.etl.contract import VENTES_LIGNES
from winecrm.etl.readers import read_all


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    a = sampledata.write_sample_exports(tmp_path / "a", n_customers=200, years=1.0)
    b = sampledata.write_sample_exports(tmp_path / "b", n_customers=200, years=1.0)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert a.bad_rows == b.bad_rows and a.sales_lines_total == b.sales_lines_total


def test_exports_look_like_isavigne(tmp_path):
    out = sampledata.write_sample_exports(tmp_path, n_customers=300, years=3.2)
    names = {p.parent.name for p in out.files}
    assert names == {"ventes_lignes", "clients", "produits", "stock"}
    history = next(p for p in out.files if "historique" in p.name)
    raw = history.read_bytes()
    assert b";" in raw.splitlines()[0] and b"\r\n" in raw
    fmt, chunks = read_all(history, VENTES_LIGNES)
    assert fmt.encoding == "cp1252" and fmt.delimiter == ";"
    frame = chunks[0]
    assert frame["date_livraison"].str.match(r"^\d{2}/\d{2}/\d{4}$").all()
    assert frame["mt_ht"].str.contains(",").any()
    assert (frame["document_type"] == "AVOIR").any()
    assert frame["client_code"].str.startswith(" ").any()  # stray spaces
    assert frame["email"].str.contains("[A-Z]", regex=True).any()  # mixed case
    assert frame["produit_label"].str.contains("Ã©").any()  # mojibake
    years = frame["date_livraison"].str[-4:].astype(int)
    assert years.max() - years.min() >= 3
    assert 45 <= out.products <= 70


def test_big_sales_file_has_the_requested_size(tmp_path):
    path = tmp_path / "big.csv"
    written = sampledata.write_sales_file(path, 120_000, chunk_lines=50_000)
    assert written == 120_000
    assert sum(1 for _ in open(path, "rb")) == 120_001
