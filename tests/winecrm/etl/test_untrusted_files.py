"""Exports are untrusted input: no XML entity tricks, no zip bombs, nothing read outside RAW."""

from __future__ import annotations

import os
import zipfile

import pytest
from winecrm import pipeline
from winecrm_tools.samples import sampledata
from winecrm.etl import ingest

from tests.conftest import MONDAY_RUN, sales_line, write_export


def _start(conn, run_id="run_1"):
    pipeline.prepare(conn, pipeline.week_window(run_id, MONDAY_RUN))


def _catalogue_xlsx(path):

    frame = sampledata.build_catalogue()[["produit", "article", "millesime", "famille_crm", "prix_ttc"]].head(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_excel(path, index=False)


def _rewrite_member(path, member, transform):
    with zipfile.ZipFile(path) as source:
        entries = [(i, source.read(i.filename)) for i in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in entries:
            target.writestr(info.filename, transform(data) if info.filename == member else data)


def _rejections(conn):
    return {p.split("/")[-1]: (e, r) for p, e, r in conn.execute(
        "SELECT file_path, expectations, reason FROM etl.quarantine WHERE row_no IS NULL")}


def test_xml_entities_in_a_workbook_are_refused_unread(conn, crm_dirs):
    path = crm_dirs["raw"] / "isavigne" / "produits" / "produits_2026-11-16.xlsx"
    _catalogue_xlsx(path)
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "&lol%s;&lol%s;&lol%s;&lol%s;">' % (i, b"" if i == 1 else str(i - 1).encode(),
                         b"" if i == 1 else str(i - 1).encode(), b"" if i == 1 else str(i - 1).encode(),
                         b"" if i == 1 else str(i - 1).encode()) for i in range(1, 9)) + b"]>")

    def billion_laughs(sheet: bytes) -> bytes:
        body = sheet.split(b"?>", 1)[1] if sheet.startswith(b"<?xml") else sheet
        return laughs + body.replace(b"<v>", b"<v>&lol8;", 1)

    _rewrite_member(path, "xl/worksheets/sheet1.xml", billion_laughs)
    _start(conn)
    report = ingest.ingest(conn, "run_1")
    assert report.files_quarantined == 1
    checks, reason = _rejections(conn)["produits_2026-11-16.xlsx"]
    assert checks == ["xlsx_unsafe_xml"] and "declares entities" in reason


def test_a_zip_bomb_is_refused_before_it_expands(conn, crm_dirs, monkeypatch, tmp_path):
    from tests.conftest import use_config

    use_config(tmp_path, monkeypatch, files={"max_xlsx_compression_ratio": 50})
    path = crm_dirs["raw"] / "isavigne" / "produits" / "produits_2026-11-16.xlsx"
    _catalogue_xlsx(path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/media/padding.bin", b"\0" * (20 * 1024 * 1024))  # ~1000:1
    _start(conn)
    ingest.ingest(conn, "run_1")
    checks, reason = _rejections(conn)["produits_2026-11-16.xlsx"]
    assert checks == ["xlsx_zip_bomb"] and "xl/media/padding.bin is compressed" in reason
    use_config(tmp_path, monkeypatch, files={"max_xlsx_uncompressed_mb": 5})
    path2 = crm_dirs["raw"] / "isavigne" / "produits" / "produits_2026-11-17.xlsx"
    _catalogue_xlsx(path2)
    with zipfile.ZipFile(path2, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("xl/media/big.bin", os.urandom(6 * 1024 * 1024))
    ingest.ingest(conn, "run_1")
    checks, reason = _rejections(conn)["produits_2026-11-17.xlsx"]
    assert checks == ["xlsx_too_large"] and "would expand to 6 MB" in reason


def test_symbolic_links_in_raw_are_never_followed(conn, crm_dirs, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = write_export(outside, "ventes_lignes", "secret_2026-11-16.csv", [sales_line(doc_no="SECRET")])
    raw_sales = crm_dirs["raw"] / "isavigne" / "ventes_lignes"
    raw_sales.mkdir(parents=True)
    (raw_sales / "link_2026-11-16.csv").symlink_to(secret)
    (raw_sales / "linked_folder").symlink_to(secret.parent, target_is_directory=True)
    write_export(crm_dirs["raw"], "ventes_lignes", "real_2026-11-16.csv", [sales_line(doc_no="REAL")])
    assert [f.path.name for f in ingest.discover(crm_dirs["raw"])] == ["real_2026-11-16.csv"]
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    assert [d for (d,) in conn.execute("SELECT DISTINCT document_no FROM etl.ventes_lignes")] == ["REAL"]


def test_a_file_swapped_for_a_link_after_discovery_is_not_read(crm_dirs, tmp_path):
    from winecrm.etl.contract import VENTES_LIGNES
    from winecrm.etl.readers import FileRejected, detect_format

    target = write_export(tmp_path, "ventes_lignes", "elsewhere.csv", [sales_line()])
    link = crm_dirs["raw"] / "swapped.csv"
    link.symlink_to(target)
    with pytest.raises((OSError, FileRejected)):
        detect_format(link, VENTES_LIGNES)
