"""Reading exports: encodings, delimiters, XLSX, malformed rows and whole-file rejections."""

from __future__ import annotations

import openpyxl
import pytest
from winecrm.etl.contract import CLIENTS, PRODUITS, VENTES_LIGNES
from winecrm.etl.readers import FileRejected, read_all

from tests.conftest import SALES_HEADER, sales_line


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _rows(chunks):
    import pandas as pd

    return pd.concat(chunks, ignore_index=True)


@pytest.mark.parametrize("encoding,expected", [
    ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252"), ("utf-16", "utf-16"),
])
def test_encodings_are_detected_and_accents_survive(tmp_path, encoding, expected):
    text = SALES_HEADER + "\r\n" + sales_line(label="Crémant d'Alsace Rosé", ville="Sélestat") + "\r\n"
    path = _write(tmp_path, "v.csv", text.encode(encoding))
    fmt, chunks = read_all(path, VENTES_LIGNES)
    assert fmt.encoding == expected
    frame = _rows(chunks)
    assert frame.loc[0, "produit_label"] == "Crémant d'Alsace Rosé"
    assert frame.loc[0, "ville"] == "Sélestat"


def test_cp1252_bytes_far_into_a_file_sniffed_as_utf8_trigger_a_full_reread(tmp_path):
    lines = [sales_line(doc_no=f"F{i}") for i in range(60_000)]  # > 4 MB of ASCII first
    lines.append(sales_line(doc_no="LAST", label="Gewurztraminer Sélection"))
    data = (SALES_HEADER + "\r\n" + "\r\n".join(lines) + "\r\n").encode("cp1252")
    path = _write(tmp_path, "big.csv", data)
    fmt, chunks = read_all(path, VENTES_LIGNES)
    frame = _rows(chunks)
    assert fmt.encoding == "cp1252"
    assert len(frame) == 60_001
    assert frame.iloc[-1]["produit_label"] == "Gewurztraminer Sélection"


@pytest.mark.parametrize("delimiter", [";", ",", "\t", "|"])
def test_delimiter_is_detected_from_the_header(tmp_path, delimiter):
    header = SALES_HEADER.replace(";", delimiter)
    line = sales_line(pu="9.58", mt="57.50", ttc="69.00", marge="24.15").replace(";", delimiter)
    path = _write(tmp_path, "v.csv", f"{header}\n{line}\n".encode())
    fmt, chunks = read_all(path, VENTES_LIGNES)
    assert fmt.delimiter == delimiter
    assert _rows(chunks).loc[0, "mt_ht"] == "57.50"


def test_headers_match_regardless_of_case_accents_and_spaces(tmp_path):
    header = ("Code Client;Date de Livraison;Libellé;Quantité;PU HT;Montant HT;Montant TTC;Marge;"
              "Type Document;N° Document;Code Article;E-mail;Code Postal;Ville;Commentaire")
    path = _write(tmp_path, "v.csv", (header + "\n" + sales_line() + ";note\n").encode("cp1252"))
    fmt, chunks = read_all(path, VENTES_LIGNES)
    assert set(fmt.mapping.mapping.values()) == set(VENTES_LIGNES.column_names)
    assert fmt.mapping.missing_required == []
    assert "Commentaire" in fmt.mapping.extra_columns
    assert any("extra columns ignored: Commentaire" in w for w in fmt.warnings)
    assert _rows(chunks).loc[0, "client_code"] == "C1"


def test_missing_required_column_rejects_the_file_naming_file_and_column(tmp_path):
    header = SALES_HEADER.replace("document_no;", "")
    path = _write(tmp_path, "ventes_sans_numero.csv", (header + "\n").encode())
    with pytest.raises(FileRejected) as info:
        read_all(path, VENTES_LIGNES)
    assert info.value.check == "missing_columns"
    assert info.value.column == "document_no"
    assert "ventes_sans_numero.csv" in info.value.reason and "document_no" in info.value.reason


def test_wrong_delimiter_is_explained(tmp_path):
    path = _write(tmp_path, "v.csv", (SALES_HEADER.replace(";", "#") + "\n").encode())
    with pytest.raises(FileRejected) as info:
        read_all(path, VENTES_LIGNES)
    assert "single column" in info.value.reason and "delimiter" in info.value.reason


@pytest.mark.parametrize("data,check", [
    (b"", "empty_file"),
    (b"   \r\n\r\n", "empty_file"),
    (bytes(range(256)) * 40, "binary_file"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "binary_file"),
])
def test_unusable_files_are_rejected_with_a_reason(tmp_path, data, check):
    path = _write(tmp_path, "junk.csv", data)
    with pytest.raises(FileRejected) as info:
        read_all(path, VENTES_LIGNES)
    assert info.value.check == check
    assert "junk.csv" in info.value.reason


def test_header_only_file_reads_no_rows(tmp_path):
    path = _write(tmp_path, "v.csv", (SALES_HEADER + "\r\n").encode())
    _, chunks = read_all(path, VENTES_LIGNES)
    assert sum(len(c) for c in chunks) == 0  # ingest turns this into a 'no_data_rows' rejection


def test_short_long_and_truncated_rows_are_kept_and_flagged_with_their_line(tmp_path):
    good = sales_line(doc_no="F1")
    short = ";".join(sales_line(doc_no="F2").split(";")[:9])
    long = sales_line(doc_no="F3") + ";extra;fields"
    truncated = sales_line(doc_no="F4")[:25]  # half-written last line, no newline
    data = "\r\n".join([SALES_HEADER, good, short, long]) + "\r\n" + truncated
    path = _write(tmp_path, "v.csv", data.encode())
    _, chunks = read_all(path, VENTES_LIGNES)
    frame = _rows(chunks)
    assert list(frame["_row"]) == [2, 3, 4, 5]
    assert frame["_malformed"].isna().tolist() == [True, False, False, False]
    assert "9 fields, header has 14" in frame.loc[1, "_malformed"]
    assert "16 fields" in frame.loc[2, "_malformed"]
    assert '"extra"' in frame.loc[2, "_raw"]


def test_quoted_multiline_field_keeps_line_numbers_of_the_following_rows(tmp_path):
    data = "\n".join([SALES_HEADER, sales_line(label='"Riesling\nmagnum"', doc_no="F1"), sales_line(doc_no="F2")]) + "\n"
    path = _write(tmp_path, "v.csv", data.encode())
    _, chunks = read_all(path, VENTES_LIGNES)
    frame = _rows(chunks)
    assert list(frame["_row"]) == [2, 4]
    assert frame.loc[0, "produit_label"] == "Riesling\nmagnum"


def _xlsx(path, sheets: dict[str, list[list]]):
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


def test_xlsx_with_several_sheets_uses_the_one_matching_the_contract(tmp_path):
    header = ["produit", "article", "millesime", "famille_crm", "prix_ttc"]
    path = _xlsx(tmp_path / "produits.xlsx", {
        "Notes": [["Export du 16/11/2026"], ["rien à voir"]],
        "Catalogue": [header, ["Riesling 2022", "RIES-22", 2022, "Riesling", 11.5],
                      ["Crémant Brut", "CREBRUT", None, "Crémant", 10.2]],
    })
    fmt, chunks = read_all(path, PRODUITS)
    frame = _rows(chunks)
    assert fmt.sheet_name == "Catalogue"
    assert any("Notes" in w for w in fmt.warnings)
    assert list(frame["article"]) == ["RIES-22", "CREBRUT"]
    assert frame.loc[0, "millesime"] == "2022" and frame.loc[0, "prix_ttc"] == "11.5"
    assert list(frame["_row"]) == [2, 3]


def test_xlsx_formula_is_stored_as_its_text_never_evaluated(tmp_path):
    header = ["client_code", "nom", "prenom", "email"]
    formula = '=HYPERLINK("http://evil.invalid","cliquez")'
    path = _xlsx(tmp_path / "clients.xlsx", {"Clients": [header, ["C1", formula, "Jean", "j@example.fr"]]})
    _, chunks = read_all(path, CLIENTS)
    assert _rows(chunks).loc[0, "nom"] == formula


def test_truncated_xlsx_is_rejected_as_unreadable(tmp_path):
    good = _xlsx(tmp_path / "full.xlsx", {"Clients": [["client_code", "nom", "prenom", "email"], ["C1", "A", "B", "c@d.fr"]]})
    data = good.read_bytes()
    half = _write(tmp_path, "clients_en_cours.xlsx", data[: len(data) // 2])
    with pytest.raises(FileRejected) as info:
        read_all(half, CLIENTS)
    assert info.value.check == "unreadable_xlsx"
    assert "clients_en_cours.xlsx" in info.value.reason
