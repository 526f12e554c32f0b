"""The peer: what a data engineer would use instead of our pipeline — dlt reading the export with
Arrow, typing it, loading it with COPY (``loader_file_format="csv"``). No validation, no
quarantine, no manifest. Runs in its own virtualenv (``make bench`` builds it from
``bench/requirements-peer.txt``: dlt is a benchmark-only dependency, never in the project's lock).

    <peer venv>/bin/python bench/peer_dlt.py --file F.csv --dsn postgresql://... [--runs replace,merge]

Prints one JSON object: seconds per step of each run (read + type, load, total) and rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time


def read_export(path: str, encoding: str, delimiter: str):
    """The export as a typed Arrow table: French decimals and dd/mm/yyyy dates, text as text,
    plus the line number (dlt's merge needs a key; ours is document + line)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    text = ["client_code", "produit_label", "document_type", "document_no", "article", "email", "code_postal",
            "ville"]
    numbers = ["qty_line", "pu_ht", "mt_ht", "mt_ttc", "marge"]
    types = {**{c: pa.string() for c in text}, **{c: pa.float64() for c in numbers},
             "date_livraison": pa.timestamp("s")}
    table = pacsv.read_csv(
        path, read_options=pacsv.ReadOptions(encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(column_types=types, decimal_point=",",
                                             timestamp_parsers=["%d/%m/%Y"]))
    table = table.set_column(table.schema.get_field_index("date_livraison"), "date_livraison",
                             pc.cast(table["date_livraison"], pa.date32()))
    return table.append_column("source_row", pa.array(range(2, table.num_rows + 2), pa.int64()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--encoding", default="cp1252")
    parser.add_argument("--delimiter", default=";")
    parser.add_argument("--runs", default="replace,merge", help="write dispositions, in order, on one dataset")
    args = parser.parse_args()

    import dlt
    from urllib.parse import urlsplit, urlunsplit

    # dlt insists on a password; a trust-auth server (the embedded one, CI's) ignores it
    parts = urlsplit(args.dsn)
    if not parts.password:
        user, _, host = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{user or 'postgres'}:unused@{host}")
    dsn = urlunsplit(parts)

    out: dict = {"dlt": dlt.__version__, "runs": []}
    with tempfile.TemporaryDirectory() as pipelines_dir:
        pipeline = dlt.pipeline(pipeline_name="peer", pipelines_dir=pipelines_dir, dataset_name="peer",
                                destination=dlt.destinations.postgres(credentials=dsn))
        for disposition in args.runs.split(","):
            started = time.perf_counter()
            table = read_export(args.file, args.encoding, args.delimiter)
            read_s = time.perf_counter() - started
            resource = dlt.resource(table, name="ventes_lignes", write_disposition=disposition,
                                    primary_key=["document_type", "document_no", "source_row"]
                                    if disposition == "merge" else None)
            load_started = time.perf_counter()
            pipeline.run(resource, loader_file_format="csv")
            load_s = time.perf_counter() - load_started
            out["runs"].append({"disposition": disposition, "rows": table.num_rows, "read_type_s": round(read_s, 2),
                                "load_s": round(load_s, 2), "total_s": round(time.perf_counter() - started, 2)})
            del table
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
