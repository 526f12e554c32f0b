"""A person's values blanked in the runs' Parquet work files: by client code (whole cell), address,
phone in any written form, or erased marker — the other rows and the sale amounts untouched."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from winecrm.privacy import erase, work_files
from winecrm.privacy import identity


def _part(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({
        "client_code": ["C1", "C10", "C2", "C3"],
        "nom": ["Zuckerstein", "Martin", "Weber", "Klein"],
        "email": [" Hilde@Example.fr ", "c10@example.fr", "c2@example.fr", "autre@example.fr"],
        "telephone": ["06 11 22 33 44", "0600000010", "+33 6 11 22 33 44", "0600000003"],
        "mt_ht": ["57,50", "10,00", "20,00", "30,00"],
        "_raw": ["C1;Zuckerstein;…", "C10;Martin;…", "C2;Weber;…", "C3;Klein;…"]}), path)
    return path


def test_the_person_is_found_by_code_address_or_phone_and_only_their_values_go(tmp_path):
    path = _part(tmp_path)
    phones = work_files.phone_digits(identity.phone_forms("06 11 22 33 44"))
    assert work_files.blank_rows(path, ["C1"], ["hilde@example.fr"], phones) == 2  # C1, and C2 by the phone
    rows = pq.read_table(path).to_pylist()
    assert [(r["client_code"], r["nom"], r["email"], r["telephone"], r["_raw"], r["mt_ht"]) for r in rows] == [
        ("C1", None, None, None, None, "57,50"),
        ("C10", "Martin", "c10@example.fr", "0600000010", "C10;Martin;…", "10,00"),  # C1 is not C10
        ("C2", None, None, None, None, "20,00"),
        ("C3", "Klein", "autre@example.fr", "0600000003", "C3;Klein;…", "30,00")]
    assert work_files.blank_rows(path, ["C1"], ["hilde@example.fr"], phones) == 0  # nothing left


def test_at_ingest_an_erased_address_becomes_its_marker(tmp_path):
    path = _part(tmp_path)
    marker = erase.erased_marker("hilde@example.fr")
    assert work_files._marker(" Hilde@Example.fr ") == marker  # the twin agrees with the erasure
    assert work_files.blank_erased(tmp_path, [], frozenset({marker})) == 1
    first = pq.read_table(path).to_pylist()[0]
    assert (first["email"], first["nom"], first["telephone"], first["_raw"]) == (marker, None, None, None)
    assert work_files.blank_erased(tmp_path, [], frozenset({marker})) == 0  # a marker is not personal


def test_what_validate_found_loses_the_persons_values_before_data_docs_records_it(crm_dirs):
    """The records the data_docs task reads (winecrm.etl.found): the values of the person's lines,
    found as in the parts beside them, and any value that is theirs go; the rest stays."""
    import datetime as dt

    from winecrm.core.storage import run_work_dir
    from winecrm.etl import found

    folder = run_work_dir("run_1") / "file-1"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"_row": [2, 3, 4], "client_code": ["C1", "C2", "C3"],
                             "email": ["hilde@example", "c2@example.fr", "zz"]}), folder / "part-00000.parquet")

    def failing(values, lines):
        return {"success": False, "element_count": 3, "nonnull_count": 3, "unexpected_count": len(values),
                "unexpected_list": values, "unexpected_index_list": lines}

    metrics = [failing(["hilde@example", "zz"], [2, 4]),  # line 2 is C1's: a typo only the line tells whose
               failing(["06 11 22 33 44 bis", "Hilde@Example.fr", 3.5], [3, 4, 4]),
               {"success": True, "observed_value": 3}]
    found.save(folder, 0, found.Found("clients", dt.date(2026, 11, 16), {}, "run_1__x", dt.datetime.now(dt.timezone.utc),
                                      "f", metrics))
    record = folder / "found-00000.json"
    phones = work_files.phone_digits(identity.phone_forms("06 11 22 33 44"))
    before = record.read_text()
    assert work_files.blank_found(["C1"], ["hilde@example.fr"], phones, dry_run=True) == {str(record): 3}
    assert record.read_text() == before
    assert work_files.blank_found(["C1"], ["hilde@example.fr"], phones) == {str(record): 3}
    kept = found.load(record)
    assert [m.get("unexpected_list") for m in kept.metrics] == [[None, "zz"], [None, None, 3.5], None]
    assert [m.get("unexpected_index_list") for m in kept.metrics] == [[2, 4], [3, 4, 4], None]
    assert work_files.blank_found(["C1"], ["hilde@example.fr"], phones) == {}  # nothing left
