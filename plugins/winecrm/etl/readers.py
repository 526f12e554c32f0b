"""Reading iSaVigne exports: encoding, delimiter, header mapping, CSV and XLSX, in chunks.

Every value comes out as text exactly as written (typing happens in validation), with the
line number it came from. Rows that do not fit the header are kept too, flagged with the
reason, so nothing is silently dropped. A file that cannot be read at all raises
``FileRejected`` with a message naming the file and, where it applies, the column.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from winecrm.core.personal import scrub
from winecrm.etl.contract import Dataset, HeaderMapping, header_score, map_headers

SAMPLE_BYTES = 4 * 1024 * 1024
DELIMITERS = (";", ",", "\t", "|")
ROW_COLUMN = "_row"  # line number in the file (header = 1)
MALFORMED_COLUMN = "_malformed"  # why a row does not fit the header, else null
RAW_LINE_COLUMN = "_raw"  # the row's fields as JSON when malformed

csv.field_size_limit(10 * 1024 * 1024)


def no_follow(path: str, flags: int) -> int:
    """open() that refuses a symbolic link: RAW files are read, never what a link points to."""
    return os.open(path, flags | os.O_NOFOLLOW)


class FileRejected(Exception):
    """The whole file cannot be used; ``reason`` says why in words an engineer can act on."""

    def __init__(self, reason: str, *, check: str, column: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.check = check  # short machine name: empty_file, binary_file, missing_columns, ...
        self.column = column


@dataclass
class FileFormat:
    file_format: str  # csv | xlsx
    encoding: str | None = None
    delimiter: str | None = None
    sheet_name: str | None = None
    header: list[str] = field(default_factory=list)
    mapping: HeaderMapping | None = None
    warnings: list[str] = field(default_factory=list)


def sniff_encoding(sample: bytes, path: Path) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    nul = sample.find(b"\x00")
    if nul != -1:
        raise FileRejected(
            f"{path.name}: not a text export (NUL byte at offset {nul}); expected CSV in UTF-8 or "
            "Windows-1252, or an .xlsx workbook",
            check="binary_file",
        )
    try:
        # A multi-byte character may be cut at the end of the sample: decode incrementally.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"  # cp1252 leaves 5 bytes undefined; latin-1 maps every byte


def _looks_binary(text: str) -> bool:
    control = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\r\n\t")
    return control > 8


def sniff_csv(path: Path, dataset: Dataset) -> FileFormat:
    with open(path, "rb", opener=no_follow) as fh:
        sample = fh.read(SAMPLE_BYTES)
    if not sample.strip():
        raise FileRejected(f"{path.name}: empty file (0 data bytes)", check="empty_file")
    encoding = sniff_encoding(sample, path)
    text = sample.decode(encoding, errors="replace")
    if _looks_binary(text):
        raise FileRejected(
            f"{path.name}: not a text export (control characters in the first lines); expected CSV "
            "in UTF-8 or Windows-1252, or an .xlsx workbook",
            check="binary_file",
        )
    lines = [ln for ln in text.splitlines() if ln.strip()]
    first = lines[0]
    best: tuple[int, str, list[str]] | None = None
    for delimiter in DELIMITERS:
        header = next(csv.reader([first], delimiter=delimiter))
        score = header_score(dataset, header)
        if best is None or score > best[0]:
            best = (score, delimiter, header)
    assert best is not None
    _, delimiter, header = best
    fmt = FileFormat("csv", encoding=encoding, delimiter=delimiter, header=[h.strip() for h in header])
    fmt.mapping = map_headers(dataset, header)
    _check_mapping(path, dataset, fmt)
    if encoding == "latin-1":
        fmt.warnings.append("bytes undefined in Windows-1252 found; decoded as Latin-1")
    return fmt


def _check_mapping(path: Path, dataset: Dataset, fmt: FileFormat) -> None:
    mapping = fmt.mapping
    assert mapping is not None
    if mapping.missing_required:
        shown = _header_shown(fmt.header, mapping)
        hint = ""
        if len(fmt.header) == 1 and fmt.file_format == "csv":
            hint = " — the header has a single column: is the delimiter one of ; , tab |?"
        raise FileRejected(
            f"{path.name}: missing required column(s) {', '.join(mapping.missing_required)} for dataset "
            f"{dataset.name}; header found: {shown}{hint}",
            check="missing_columns",
            column=mapping.missing_required[0],
        )
    if mapping.duplicated:
        fmt.warnings.append(f"columns given twice, first one used: {', '.join(mapping.duplicated)}")
    if mapping.extra_columns:
        fmt.warnings.append(f"extra columns ignored: {', '.join(scrub(c) for c in mapping.extra_columns)}")


def _header_shown(header: list, mapping) -> str:
    """The header row as a rejection reason quotes it. A header in which no cell names a contract
    column is most likely a data row (an export without its header line): its cells are personal
    values, so only their number is given; otherwise cells that look like an address or a phone
    number are masked (the reason goes to logs and alerts)."""
    if not mapping.mapping:
        return f"{len(header)} cell(s), none a column of the contract (a data row? its values are not repeated here)"
    return ", ".join(repr(scrub(str(h))) for h in header[:20])


def _frame(rows: list[list[str]], line_numbers: list[int], malformed: list[str | None],
           raw: list[str | None], mapping: HeaderMapping) -> pd.DataFrame:
    columns = list(zip(*rows)) if rows else []
    data: dict[str, object] = {}
    for position, name in mapping.mapping.items():
        data[name] = pd.array(columns[position] if columns else [], dtype="string")
    data[ROW_COLUMN] = pd.array(line_numbers, dtype="int64")
    data[MALFORMED_COLUMN] = pd.array(malformed, dtype="string")
    data[RAW_LINE_COLUMN] = pd.array(raw, dtype="string")
    return pd.DataFrame(data)


def iter_csv_chunks(path: Path, fmt: FileFormat, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's rows in chunks of ``chunk_rows``: through Arrow's CSV parser when the file has
    nothing only the csv module's rules settle (see ``arrow_can_read``), else row by row with
    the csv module. Both give the same frames (tests/winecrm/etl/test_fast_csv.py)."""
    if arrow_can_read(path, fmt):
        yield from _iter_csv_chunks_arrow(path, fmt, chunk_rows)
    else:
        yield from _iter_csv_chunks_exact(path, fmt, chunk_rows)


def _iter_csv_chunks_exact(path: Path, fmt: FileFormat, chunk_rows: int) -> Iterator[pd.DataFrame]:
    assert fmt.mapping is not None and fmt.encoding and fmt.delimiter
    width = len(fmt.header)
    encoding = fmt.encoding
    with open(path, "r", encoding=encoding, newline="", errors="strict" if encoding != "latin-1" else "replace",
              opener=no_follow) as fh:
        reader = csv.reader(fh, delimiter=fmt.delimiter)
        try:
            next(reader)  # header
        except StopIteration:
            return
        rows: list[list[str]] = []
        lines: list[int] = []
        malformed: list[str | None] = []
        raw: list[str | None] = []
        blank = [""] * width
        previous_end = reader.line_num
        try:
            for record in reader:
                start = previous_end + 1
                previous_end = reader.line_num
                if not record or not any(field.strip() for field in record):
                    continue  # blank line
                if len(record) == width:
                    rows.append(record)
                    malformed.append(None)
                    raw.append(None)
                else:
                    kind = "fewer" if len(record) < width else "more"
                    malformed.append(
                        f"row has {len(record)} fields, header has {width} ({kind}: truncated line, "
                        "or an unquoted delimiter inside a text field)"
                    )
                    raw.append(json.dumps(record, ensure_ascii=False))
                    rows.append((record + blank)[:width])
                lines.append(start)
                if len(rows) >= chunk_rows:
                    yield _frame(rows, lines, malformed, raw, fmt.mapping)
                    rows, lines, malformed, raw = [], [], [], []
        except UnicodeDecodeError as exc:
            raise _EncodingRetry(str(exc)) from exc
        except csv.Error as exc:
            raise FileRejected(f"{path.name}: unreadable CSV near line {reader.line_num}: {exc}",
                               check="unreadable_csv") from exc
        if rows:
            yield _frame(rows, lines, malformed, raw, fmt.mapping)


class _EncodingRetry(Exception):
    pass


# --------------------------------------------------------------------------- the Arrow path
#
# The csv module costs ~15 s per million lines here, Python-level work per row and per value.
# Arrow's parser reads the same lines in well under a second, but it settles a few things
# differently: quoted fields (a quote inside an unquoted field, a newline inside quotes), a lone
# CR as a line end, NUL bytes. A file with none of these — no quote character at all, every CR
# followed by LF, no NUL, its first line the header — is split on newlines and delimiters alike by
# both, so it goes through Arrow; any other file through the csv module. Rows that do not fit
# the header and blank lines are found per line on the bytes (numpy) and handled exactly as the
# csv path does; only well-formed lines are handed to Arrow.

ARROW_BLOCK_BYTES = 16 * 1024 * 1024
ARROW_ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1")
# bytes str.strip() removes (ASCII): a field made of them is blank
_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def arrow_can_read(path: Path, fmt: FileFormat, scan_bytes: int = ARROW_BLOCK_BYTES) -> bool:
    if fmt.file_format != "csv" or fmt.encoding not in ARROW_ENCODINGS or fmt.delimiter is None \
            or len(fmt.delimiter.encode()) != 1:
        return False
    first = True
    with open(path, "rb", opener=no_follow) as fh:
        previous_cr = False
        while block := fh.read(scan_bytes):
            if first:
                head = block.removeprefix(codecs.BOM_UTF8) if fmt.encoding == "utf-8-sig" else block
                newline = head.find(b"\n")
                line = (head if newline < 0 else head[:newline]).rstrip(b"\r")
                if not line.strip(_ASCII_SPACE + fmt.delimiter.encode()):
                    return False  # the csv path would take a blank first line as the header
                first = False
            if b'"' in block or b"\x00" in block:
                return False
            if previous_cr and not block.startswith(b"\n"):
                return False
            if block.count(b"\r") - block.endswith(b"\r") != block.count(b"\r\n"):
                return False
            previous_cr = block.endswith(b"\r")
        return not previous_cr


def _iter_csv_chunks_arrow(path: Path, fmt: FileFormat, chunk_rows: int) -> Iterator[pd.DataFrame]:
    assert fmt.mapping is not None and fmt.encoding and fmt.delimiter
    pending: list[pd.DataFrame] = []
    buffered = 0
    for frame in _arrow_blocks(path, fmt):
        pending.append(frame)
        buffered += len(frame)
        while buffered >= chunk_rows:
            whole = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
            yield whole.iloc[:chunk_rows].reset_index(drop=True)
            rest = whole.iloc[chunk_rows:].reset_index(drop=True)
            pending, buffered = ([rest] if len(rest) else []), len(rest)
    if buffered:
        yield pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]


def _arrow_blocks(path: Path, fmt: FileFormat) -> Iterator[pd.DataFrame]:
    """Frames of whole lines, block by block (blocks end on a newline: no quotes, so every
    newline ends a record), in file order."""
    encoding = fmt.encoding
    line_no = 1  # lines consumed: the header is line 1
    with open(path, "rb", opener=no_follow) as fh:
        data = fh.readline()  # the header
        if not data:
            return
        carry = b""
        while True:
            block = fh.read(ARROW_BLOCK_BYTES)
            data = carry + block
            if not data:
                return
            if block:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            try:
                text = data.decode("utf-8" if encoding == "utf-8-sig" else encoding,
                                   errors="replace" if encoding == "latin-1" else "strict")
            except UnicodeDecodeError as exc:
                raise _EncodingRetry(str(exc)) from exc
            utf8 = data if encoding in ("utf-8", "utf-8-sig") else text.encode("utf-8")
            frame, lines = _parse_lines(utf8, fmt, line_no)
            line_no += lines
            if len(frame):
                yield frame
            if not block:
                return


def _solid_lines(raw, starts, content_ends, delimiter: bytes):
    """Per line: does it hold a byte other than blanks and the delimiter, and an ASCII one?
    The lines are scanned side by side, one byte position at a time, and a line leaves the scan
    at its first ASCII solid byte — for nearly every line its first byte (classifying every byte
    of the block cost 0.4 s per million lines)."""
    import numpy as np

    space = np.zeros(256, dtype=bool)
    space[np.frombuffer(_ASCII_SPACE + delimiter, dtype=np.uint8)] = True
    has_solid = np.zeros(len(starts), dtype=bool)
    has_ascii_solid = np.zeros(len(starts), dtype=bool)
    pending = np.flatnonzero(content_ends > starts)
    at = starts[pending]
    for _ in range(SIDE_BY_SIDE_BYTES):
        if not len(pending):
            break
        byte = raw[at]
        solid = ~space[byte]
        ascii_solid = solid & (byte < 0x80)
        has_solid[pending[solid]] = True
        has_ascii_solid[pending[ascii_solid]] = True
        at = at + 1
        going_on = ~ascii_solid & (at < content_ends[pending])
        pending, at = pending[going_on], at[going_on]
    if len(pending):  # long runs of blanks or delimiters: the rest of those lines, every byte at once
        solid = np.append(~space[raw], False)  # one more byte: a segment may end at the block's end
        ascii_solid = solid & np.append(raw < 0x80, False)
        bounds = np.column_stack((at, content_ends[pending])).ravel()
        has_solid[pending] |= np.maximum.reduceat(solid, bounds)[::2]
        has_ascii_solid[pending] |= np.maximum.reduceat(ascii_solid, bounds)[::2]
    return has_solid, has_ascii_solid


SIDE_BY_SIDE_BYTES = 32  # byte positions scanned line by line before the rest is classified at once


def _parse_lines(utf8: bytes, fmt: FileFormat, line_no: int) -> tuple[pd.DataFrame, int]:
    """One block of whole lines (UTF-8) -> the frame the csv path builds for them, and how many
    lines the block held."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    width = len(fmt.header)
    delimiter = fmt.delimiter.encode()
    raw = np.frombuffer(utf8, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    if not utf8.endswith(b"\n"):
        ends = np.append(ends, len(utf8))  # the last line has no newline
    starts = np.concatenate(([0], ends[:-1] + 1))
    content_ends = ends - ((ends > starts) & (raw[np.maximum(ends - 1, 0)] == 13))  # without CR
    n = len(ends)
    delimiters = np.flatnonzero(raw == delimiter[0])
    fields = np.searchsorted(delimiters, content_ends) - np.searchsorted(delimiters, starts) + 1
    has_solid, has_ascii_solid = _solid_lines(raw, starts, content_ends, delimiter)
    blank = ~has_solid
    # a line whose only solid bytes are non-ASCII may still be blank to str.strip() (U+00A0, ...)
    for i in np.flatnonzero(has_solid & ~has_ascii_solid):
        line = utf8[starts[i]:content_ends[i]].decode("utf-8")
        blank[i] = not any(field.strip() for field in line.split(fmt.delimiter))
    good = ~blank & (fields == width)
    odd = np.flatnonzero(~blank & (fields != width))

    names = [f"f{i}" for i in range(width)]
    columns: dict[str, object] = {}
    good_lines = np.flatnonzero(good)
    if len(good_lines):
        if len(good_lines) == n:
            body = utf8
        else:  # well-formed runs of lines, joined (few cuts: bad lines are rare)
            breaks = np.flatnonzero(np.diff(good_lines) != 1)
            run_first = np.concatenate(([good_lines[0]], good_lines[breaks + 1]))
            run_last = np.concatenate((good_lines[breaks], [good_lines[-1]]))
            body = b"".join(utf8[starts[a]:ends[b]] + b"\n" for a, b in zip(run_first, run_last))
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=4 * 1024 * 1024),
            parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char=False, double_quote=False,
                                             newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False,
                                                 check_utf8=False))
        if table.num_rows != len(good_lines):  # never seen; a wrong line number must not pass silently
            raise RuntimeError(f"Arrow read {table.num_rows} rows where the line scan found {len(good_lines)}")
    else:
        table = None
    for position, name in fmt.mapping.mapping.items():
        good_values = table.column(position) if table is not None else pa.array([], pa.string())
        columns[name] = good_values
    frame = pd.DataFrame({name: pd.array(values, dtype="string") for name, values in columns.items()})
    frame[ROW_COLUMN] = pd.array(line_no + 1 + good_lines, dtype="int64")
    no_text = pa.nulls(len(good_lines), pa.string())  # (a list of None: 0.04 s per 200,000 lines)
    frame[MALFORMED_COLUMN] = pd.array(no_text, dtype="string")
    frame[RAW_LINE_COLUMN] = pd.array(no_text, dtype="string")
    if len(odd):
        records = [utf8[starts[i]:content_ends[i]].decode("utf-8").split(fmt.delimiter) for i in odd]
        blank_record = [""] * width
        padded = [(record + blank_record)[:width] for record in records]
        malformed = [f"row has {len(r)} fields, header has {width} "
                     f"({'fewer' if len(r) < width else 'more'}: truncated line, "
                     "or an unquoted delimiter inside a text field)" for r in records]
        extra = _frame(padded, list(line_no + 1 + odd), malformed,
                       [json.dumps(r, ensure_ascii=False) for r in records], fmt.mapping)
        frame = pd.concat([frame, extra], ignore_index=True)
        frame = frame.sort_values(ROW_COLUMN, kind="stable", ignore_index=True)
    return frame, n


def _cell_text(value: object) -> str:
    import datetime as dt

    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    return str(value)


def check_zip_safety(path: Path, max_uncompressed_mb: float, max_ratio: float) -> None:
    """Refuse an .xlsx (a zip of XML files) that would expand beyond what any real export needs:
    a zip bomb fills the worker's memory or disk before the first row is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileRejected(f"{path.name}: not a readable .xlsx workbook ({exc.__class__.__name__}: {exc}); "
                           "incomplete copy or wrong extension?", check="unreadable_xlsx") from exc
    total = sum(m.file_size for m in members)
    if total > max_uncompressed_mb * 1024 * 1024:
        raise FileRejected(f"{path.name}: the workbook would expand to {total / 1024 / 1024:,.0f} MB "
                           f"(> files.max_xlsx_uncompressed_mb = {max_uncompressed_mb:,.0f}); not read",
                           check="xlsx_too_large")
    for member in members:
        if member.compress_size and member.file_size / member.compress_size > max_ratio and member.file_size > 1024 * 1024:
            raise FileRejected(f"{path.name}: part {member.filename} is compressed {member.file_size / member.compress_size:,.0f}:1 "
                               f"(> files.max_xlsx_compression_ratio = {max_ratio:,.0f}): a zip bomb, not read",
                               check="xlsx_zip_bomb")


def _open_workbook(path: Path):
    import openpyxl
    from defusedxml import DefusedXmlException

    from winecrm.core import settings

    if not openpyxl.DEFUSEDXML:
        # openpyxl parses with defusedxml (no entity expansion, no external entities) only when the
        # package is importable and OPENPYXL_DEFUSEDXML is not "False": never read XLSX without it.
        raise RuntimeError("defusedxml is required to read .xlsx exports safely (pip install defusedxml; "
                           "do not set OPENPYXL_DEFUSEDXML=False)")
    limits = settings.pipeline_config().files
    check_zip_safety(path, limits.max_xlsx_uncompressed_mb, limits.max_xlsx_compression_ratio)
    try:
        # data_only=False: a formula cell gives its formula text, stored as plain text, never evaluated.
        return openpyxl.load_workbook(path, read_only=True, data_only=False)
    except DefusedXmlException as exc:
        raise _unsafe_xml(path, exc) from exc
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        cause = _cause(exc, DefusedXmlException)
        if cause is not None:  # openpyxl wraps what the XML parser refused in a ValueError
            raise _unsafe_xml(path, cause) from exc
        raise FileRejected(f"{path.name}: not a readable .xlsx workbook ({exc.__class__.__name__}: {exc}); "
                           "incomplete copy or wrong extension?", check="unreadable_xlsx") from exc


def _sheet_header(sheet) -> tuple[int, list[str]]:
    for index, row in enumerate(sheet.iter_rows(min_row=1, max_row=10, values_only=True), start=1):
        cells = [_cell_text(v).strip() for v in row]
        if any(cells):
            return index, cells
    return 0, []


def _cause(exc: BaseException, kind: type) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _unsafe_xml(path: Path, exc: BaseException) -> FileRejected:
    return FileRejected(f"{path.name}: the workbook's XML declares entities ({exc.__class__.__name__}), which an "
                        "export never does (XML bomb / external entity); not read", check="xlsx_unsafe_xml")


def sniff_xlsx(path: Path, dataset: Dataset) -> tuple[FileFormat, int]:
    from defusedxml import DefusedXmlException

    try:
        return _sniff_xlsx(path, dataset)
    except DefusedXmlException as exc:
        raise _unsafe_xml(path, exc) from exc


def _sniff_xlsx(path: Path, dataset: Dataset) -> tuple[FileFormat, int]:
    workbook = _open_workbook(path)
    try:
        candidates = []
        for sheet in workbook.worksheets:
            header_row, header = _sheet_header(sheet)
            candidates.append((header_score(dataset, header), sheet.title, header_row, header))
        if not candidates:
            raise FileRejected(f"{path.name}: workbook has no sheets", check="empty_file")
        candidates.sort(key=lambda c: -c[0])
        score, title, header_row, header = candidates[0]
        if not header:
            raise FileRejected(f"{path.name}: every sheet is empty", check="empty_file")
        fmt = FileFormat("xlsx", sheet_name=title, header=header)
        fmt.mapping = map_headers(dataset, header)
        others = [c[1] for c in candidates[1:]]
        if others:
            fmt.warnings.append(f"sheet {title!r} used; other sheets ignored: {', '.join(others)}")
        try:
            _check_mapping(path, dataset, fmt)
        except FileRejected as exc:
            if others:
                exc.reason += f" (best of sheets: {', '.join(c[1] for c in candidates)})"
                exc.args = (exc.reason,)
            raise
        return fmt, header_row
    finally:
        workbook.close()


def iter_xlsx_chunks(path: Path, fmt: FileFormat, header_row: int, chunk_rows: int) -> Iterator[pd.DataFrame]:
    from defusedxml import DefusedXmlException

    try:
        yield from _iter_xlsx_chunks(path, fmt, header_row, chunk_rows)
    except DefusedXmlException as exc:
        raise _unsafe_xml(path, exc) from exc


def _iter_xlsx_chunks(path: Path, fmt: FileFormat, header_row: int, chunk_rows: int) -> Iterator[pd.DataFrame]:
    assert fmt.mapping is not None
    workbook = _open_workbook(path)
    try:
        sheet = workbook[fmt.sheet_name]
        width = len(fmt.header)
        rows, lines, malformed, raw = [], [], [], []
        for number, values in enumerate(sheet.iter_rows(min_row=header_row + 1, values_only=True), start=header_row + 1):
            cells = [_cell_text(v) for v in values]
            if not any(c.strip() for c in cells):
                continue
            extra = [c for c in cells[width:] if c.strip()]
            if extra:
                malformed.append(f"row has values beyond the {width} header columns")
                raw.append(json.dumps(cells, ensure_ascii=False))
            else:
                malformed.append(None)
                raw.append(None)
            rows.append((cells + [""] * width)[:width])
            lines.append(number)
            if len(rows) >= chunk_rows:
                yield _frame(rows, lines, malformed, raw, fmt.mapping)
                rows, lines, malformed, raw = [], [], [], []
        if rows:
            yield _frame(rows, lines, malformed, raw, fmt.mapping)
    finally:
        workbook.close()


def detect_format(path: Path, dataset: Dataset) -> tuple[FileFormat, int]:
    """Sniff a file; returns its format and (for XLSX) the header row number."""
    if path.stat().st_size == 0:
        raise FileRejected(f"{path.name}: empty file (0 bytes)", check="empty_file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if path.suffix.lower() in (".xlsx", ".xlsm") or magic == b"PK\x03\x04":
        return sniff_xlsx(path, dataset)
    if path.suffix.lower() == ".xls":
        raise FileRejected(f"{path.name}: legacy .xls is not supported; export as .xlsx or CSV",
                           check="unsupported_format")
    return sniff_csv(path, dataset), 1


def iter_chunks(path: Path, dataset: Dataset, fmt: FileFormat, header_row: int,
                chunk_rows: int = 250_000) -> Iterator[pd.DataFrame]:
    """Chunks of canonical text columns + ``_row`` / ``_malformed`` / ``_raw``.

    If a CSV sniffed as UTF-8 turns out to hold Windows-1252 bytes further down, it is
    re-read from the start as Windows-1252 (``fmt.encoding`` is updated); callers must
    therefore consume chunks into a restartable sink (see ``winecrm.etl.ingest``).
    """
    if fmt.file_format == "xlsx":
        yield from iter_xlsx_chunks(path, fmt, header_row, chunk_rows)
        return
    yield from iter_csv_chunks(path, fmt, chunk_rows)


def read_all(path: Path, dataset: Dataset, chunk_rows: int = 250_000) -> tuple[FileFormat, list[pd.DataFrame]]:
    """Convenience for small files and tests: the whole file in memory, encoding retry handled."""
    fmt, header_row = detect_format(path, dataset)
    try:
        return fmt, list(iter_chunks(path, dataset, fmt, header_row, chunk_rows))
    except _EncodingRetry:
        fmt.encoding = "cp1252"
        fmt.warnings.append("file mixes encodings; read as Windows-1252")
        return fmt, list(iter_chunks(path, dataset, fmt, header_row, chunk_rows))


EncodingRetry = _EncodingRetry
__all__ = ["FileRejected", "FileFormat", "EncodingRetry", "detect_format", "iter_chunks", "read_all",
           "ROW_COLUMN", "MALFORMED_COLUMN", "RAW_LINE_COLUMN"]
