"""The Arrow CSV path gives exactly the frames of the csv-module path, on every file it accepts:
line numbers, blank lines skipped, short and long rows kept with their reason and raw fields,
chunk boundaries, encodings; files it must not take (quotes, a lone CR, NUL, a blank first line)
go to the csv module."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from winecrm.etl import readers
from winecrm.etl.contract import VENTES_LIGNES

from tests.conftest import SALES_HEADER, sales_line

WIDTH = len(SALES_HEADER.split(";"))
# values that look like what exports hold, with the characters that matter here
VALUE = st.text(alphabet=st.sampled_from(list("aZ09 ,.-'éÉ€àç\t") + ["\u00a0", "\u202f", "Ã", "©"]), max_size=6)


@st.composite
def export_line(draw) -> str:
    kind = draw(st.sampled_from(["good", "good", "good", "short", "long", "blank", "spaces", "delims", "nbsp",
                                 "late"]))
    if kind == "late":  # blanks, delimiters and non-ASCII blanks before the first solid character
        prefix = draw(st.text(alphabet=st.sampled_from([" ", "\t", ";", "\u00a0", "\u202f"]), max_size=WIDTH + 40))
        return prefix + draw(st.sampled_from(["", "x", "é", "\u00a0x", "Ã"]))
    if kind == "good":
        return ";".join(draw(st.lists(VALUE, min_size=WIDTH, max_size=WIDTH)))
    if kind == "short":
        return ";".join(draw(st.lists(VALUE, min_size=1, max_size=WIDTH - 1)))
    if kind == "long":
        return ";".join(draw(st.lists(VALUE, min_size=WIDTH + 1, max_size=WIDTH + 3)))
    if kind == "blank":
        return ""
    if kind == "spaces":
        return " " * draw(st.integers(1, 3))
    if kind == "delims":
        return ";" * draw(st.integers(1, WIDTH + 1))
    return "\u00a0;" * draw(st.integers(1, 3))


def _frames(path, fmt, chunk_rows, exact: bool):
    reader = readers._iter_csv_chunks_exact if exact else readers._iter_csv_chunks_arrow
    try:
        return list(reader(path, fmt, chunk_rows))
    except readers.EncodingRetry:
        fmt.encoding = "cp1252"
        return list(reader(path, fmt, chunk_rows))


def _same(path, chunk_rows):
    fmt, _ = readers.detect_format(path, VENTES_LIGNES)
    assert readers.arrow_can_read(path, fmt)
    fast = _frames(path, fmt, chunk_rows, exact=False)
    exact = _frames(path, fmt, chunk_rows, exact=True)
    assert [len(f) for f in fast] == [len(f) for f in exact]
    for a, b in zip(fast, exact):
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    return exact


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(export_line(), min_size=0, max_size=40), newline=st.sampled_from(["\n", "\r\n"]),
       encoding=st.sampled_from(["utf-8", "cp1252", "utf-8-sig"]), final_newline=st.booleans(),
       chunk_rows=st.integers(1, 7))
def test_arrow_path_matches_the_csv_module(tmp_path, lines, newline, encoding, final_newline, chunk_rows):
    text = newline.join([SALES_HEADER, sales_line(), *lines]) + (newline if final_newline else "")
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    path = tmp_path / "v.csv"
    path.write_bytes(data)
    _same(path, chunk_rows)


def test_small_blocks_cut_between_lines_and_keep_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "ARROW_BLOCK_BYTES", 97)  # many blocks, cut anywhere
    lines = [sales_line(doc_no=f"F{i}") for i in range(40)]
    lines[7] = "C1;too;short"
    lines[20] = ""
    lines[33] = ";;;"
    path = tmp_path / "v.csv"
    path.write_bytes(("\r\n".join([SALES_HEADER, *lines]) + "\r\n").encode("cp1252"))
    exact = _same(path, 6)
    frame = pd.concat(exact, ignore_index=True)
    assert len(frame) == 38
    assert frame.loc[frame["_row"] == 9, "_malformed"].iloc[0].startswith("row has 3 fields")


def test_a_late_windows_1252_byte_restarts_the_arrow_path_too(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "ARROW_BLOCK_BYTES", 4096)
    monkeypatch.setattr(readers, "SAMPLE_BYTES", 2048)  # the sniffer sees ASCII only
    lines = [sales_line(doc_no=f"F{i}") for i in range(400)] + [sales_line(label="Gewurztraminer Sélection")]
    path = tmp_path / "v.csv"
    path.write_bytes(("\n".join([SALES_HEADER, *lines]) + "\n").encode("cp1252"))
    fmt, _ = readers.detect_format(path, VENTES_LIGNES)
    assert fmt.encoding == "utf-8"
    with pytest.raises(readers.EncodingRetry):
        list(readers._iter_csv_chunks_arrow(path, fmt, 100))
    fmt.encoding = "cp1252"
    frame = pd.concat(readers._iter_csv_chunks_arrow(path, fmt, 100), ignore_index=True)
    assert frame["produit_label"].iloc[-1] == "Gewurztraminer Sélection"


@pytest.mark.parametrize("body", [
    'C1;"quoted;value";x',             # a quoted field: the csv module's rules
    "C1;a\rb",                         # a lone CR ends a record for the csv module
    "C1;nul\x00byte",                  # the csv module rejects NUL
])
def test_files_arrow_would_read_differently_go_to_the_csv_module(tmp_path, monkeypatch, body):
    head = SALES_HEADER + "\r\n" + sales_line() + "\r\n"
    monkeypatch.setattr(readers, "SAMPLE_BYTES", len(head))  # past the sniffer's sample
    path = tmp_path / "v.csv"
    path.write_bytes((head + body + "\r\n").encode())
    fmt, _ = readers.detect_format(path, VENTES_LIGNES)
    assert not readers.arrow_can_read(path, fmt)


def test_a_blank_first_line_goes_to_the_csv_module(tmp_path):
    path = tmp_path / "v.csv"
    path.write_bytes(("\r\n" + SALES_HEADER + "\r\n" + sales_line() + "\r\n").encode())
    fmt, _ = readers.detect_format(path, VENTES_LIGNES)
    assert not readers.arrow_can_read(path, fmt)


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(st.lists(st.tuples(st.sampled_from(["C1", "C2", "C3", "C4"]), st.booleans()),
                                max_size=12), min_size=1, max_size=5))
def test_exact_duplicates_are_found_across_chunks_like_a_plain_dictionary(chunks):
    """SeenLines (sorted arrays, bounded memory) against the obvious dictionary of first lines."""
    from winecrm.etl.parsing import SeenLines

    seen, first_line, row = SeenLines(), {}, 2
    for rows in chunks:
        frame = pd.DataFrame({"client_code": pd.array([c for c, _ in rows], dtype="string"),
                              "_row": range(row, row + len(rows)),
                              "_malformed": pd.array(["x" if bad else None for _, bad in rows], dtype="string")})
        expected = []
        for (code, bad), line in zip(rows, frame["_row"]):
            if bad:
                expected.append(None)
                continue
            expected.append(first_line.get(code))
            first_line.setdefault(code, line)
        got = seen.first_rows(VENTES_LIGNES, frame)
        assert [None if pd.isna(v) else int(v) for v in got] == expected
        row += len(rows)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(
    st.none(),
    st.from_regex(r"\A[-+]?[0-9 .,]{0,12}[0-9]{0,3}\Z", fullmatch=True),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet="0123456789-+.,eE \u00a0\u202finfa", max_size=10)), max_size=30))
def test_decimals_typed_by_arrow_are_those_pandas_would_give(values):
    from winecrm.etl.parsing import _strip, parse_decimal

    text = _strip(pd.Series(values, dtype="object"))
    cleaned = text
    for space in (" ", "\u00a0", "\u202f"):
        cleaned = cleaned.str.replace(space, "", regex=False)
    comma = cleaned.str.contains(",", regex=False, na=False)
    cleaned = cleaned.where(~comma, cleaned.str.replace(".", "", regex=False).str.replace(",", ".", regex=False))
    expected = pd.to_numeric(cleaned, errors="coerce").astype("float64")
    got = parse_decimal(text)
    assert got.dtype == "float64" and list(got.index) == list(text.index)
    assert np.array_equal(got.to_numpy(), expected.to_numpy(), equal_nan=True), pd.DataFrame(
        {"value": values, "got": got, "expected": expected})
