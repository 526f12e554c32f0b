"""The expectations our suites use, evaluated on a validation frame with the very pandas operations
Great Expectations' pandas engine applies, without the engine's per-run machinery.

GX stays the definition of every check (the suites in ``winecrm.etl.rules``), the shape of every
result (its own ``_format_map_output``, applied in ``winecrm.etl.gx_context``), the validation
results store and Data Docs. Nothing here imports GX: the chunks are checked in a process forked
before GX is imported (~2.5 s), while the task's process imports it and records the results. What it costs
to run a suite through a checkpoint is mostly not the checks: per chunk, the stores' freshness
checks, the metric graph (pydantic models per metric), a hash of the frame per suite and a copy of
the non-null rows per expectation — about 0.5 s for 125,000 sales lines, against 0.05 s for the
comparisons themselves. Here each expectation is one vectorised mask over the column.

Only the seven expectation types the suites use are known here, with GX 1.x's semantics:
``check_chunk`` returns None for anything else (another type, a column the frame lacks,
``mostly``), and the caller then runs the chunk through GX's own engine. ``tests/winecrm/etl/test_checks.py``
runs both on the same frames and requires the stored results and the rendered pages to be equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# GX's cap on the unexpected values a COMPLETE result lists (great_expectations.constants); the
# index list is not capped.
MAX_RESULT_RECORDS = 200

NULL_TYPES = {"expect_column_values_to_be_null", "expect_column_values_to_not_be_null"}
NON_NULL_MAP_TYPES = {"expect_column_values_to_match_regex", "expect_column_values_to_be_in_set",
                      "expect_column_values_to_be_between"}
SUPPORTED = NULL_TYPES | NON_NULL_MAP_TYPES | {"expect_table_row_count_to_be_between", "expect_column_to_exist"}
# kwargs that do not change what is checked; anything else (mostly, row_condition, …) goes to GX
_NEUTRAL_KWARGS = {"column", "batch_id", "regex", "value_set", "min_value", "max_value", "strict_min",
                   "strict_max"}


def supported(expectation_type: str, kwargs: dict, frame: pd.DataFrame) -> bool:
    if expectation_type not in SUPPORTED or set(kwargs) - _NEUTRAL_KWARGS:
        return False
    if expectation_type == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if (low is None and high is None) or (low is not None and high is not None and low > high):
            return False  # GX reports its own error for these
    if expectation_type in NULL_TYPES | NON_NULL_MAP_TYPES and kwargs.get("column") not in frame.columns:
        return False
    if expectation_type == "expect_column_values_to_be_between":
        # numbers only: GX compares dates, text and mixed values its own way (parsing, errors)
        column = frame[kwargs["column"]]
        return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    return True


def _unexpected_mask(expectation_type: str, kwargs: dict, values: pd.Series) -> np.ndarray:
    """True where a (non-null, for the non-null types) value fails, as GX's pandas partials compute it."""
    if expectation_type == "expect_column_values_to_match_regex":
        return ~values.astype(str).str.contains(kwargs["regex"]).to_numpy(dtype=bool)
    if expectation_type == "expect_column_values_to_be_in_set":
        if kwargs.get("value_set") is None:
            return np.zeros(len(values), dtype=bool)
        return ~values.isin(kwargs["value_set"]).to_numpy(dtype=bool)
    if expectation_type == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        inside = np.ones(len(values), dtype=bool)
        numbers = values.to_numpy()
        if low is not None:
            inside &= (numbers > low) if kwargs.get("strict_min") else (numbers >= low)
        if high is not None:
            inside &= (numbers < high) if kwargs.get("strict_max") else (numbers <= high)
        return ~inside
    raise KeyError(expectation_type)


def evaluate(expectation_type: str, kwargs: dict, frame: pd.DataFrame) -> dict[str, Any]:
    """What GX's metrics give its ``_validate`` for one expectation: ``success`` and, for a column
    map expectation, the counts, the first unexpected values (at most 200, GX's cap) and every
    unexpected row's index; ``winecrm.etl.gx_context`` shapes them into GX's result format."""
    element_count = len(frame)
    if expectation_type == "expect_table_row_count_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        success = (low is None or element_count >= low) and (high is None or element_count <= high)
        return {"success": bool(success), "observed_value": element_count}
    if expectation_type == "expect_column_to_exist":
        return {"success": kwargs["column"] in frame.columns}
    column = frame[kwargs["column"]]
    if expectation_type in NULL_TYPES:
        nulls = column.isnull().to_numpy(dtype=bool)
        mask = ~nulls if expectation_type == "expect_column_values_to_be_null" else nulls
        domain = column
        nonnull_count = None  # these two say nothing of "missing" values
        unexpected_count = int(np.count_nonzero(mask))
        success = element_count == 0 or (element_count - unexpected_count) / element_count >= 1.0
    else:
        notnull = column.notnull().to_numpy(dtype=bool)
        domain = column[notnull]
        mask = _unexpected_mask(expectation_type, kwargs, domain)
        nonnull_count = int(np.count_nonzero(notnull))
        unexpected_count = int(np.count_nonzero(mask))
        if element_count == 0 or nonnull_count == 0:
            success = True  # vacuously, as GX says
        else:
            success = (float(nonnull_count) - float(unexpected_count)) / float(nonnull_count) >= 1.0
    failing = domain[mask]
    return {"success": bool(success), "element_count": element_count, "nonnull_count": nonnull_count,
            "unexpected_count": unexpected_count, "unexpected_list": list(failing[:MAX_RESULT_RECORDS]),
            "unexpected_index_list": list(failing.index)}


def check_chunk(rules: list, view: pd.DataFrame) -> list[dict] | None:
    """Each rule's evaluation (``evaluate``), in the rules' order; None when one of them is not
    known here (the chunk then goes through GX's engine)."""
    if not all(supported(rule.kind, rule.kwargs, view) for rule in rules):
        return None
    return [evaluate(rule.kind, rule.kwargs, view) for rule in rules]


def outcomes(rules: list, metrics: list[dict]) -> list[tuple]:
    """(rule, label, success, failing row indexes, exception info) per rule, as the split of a
    chunk into good and quarantined rows reads them."""
    return [(rule, rule.label, m["success"], m.get("unexpected_index_list") or [], None)
            for rule, m in zip(rules, metrics)]


def fingerprint(frame: pd.DataFrame) -> str:
    """The batch fingerprint GX records in a validation's batch markers (its
    ``hash_pandas_dataframe``): md5 of pandas' hash of every row, index included."""
    import hashlib
    import pickle

    try:
        data = pd.util.hash_pandas_object(frame, index=True).values
    except TypeError:
        data = pickle.dumps(frame, pickle.HIGHEST_PROTOCOL)
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def checked_columns(frame: pd.DataFrame, rules: list) -> pd.DataFrame:
    """The frame the suites are run on: only the columns an expectation names (a column rule's own
    column, present or not, is what ExpectColumnToExist checks), same index (the file's line
    numbers). The validation frame's other columns (typed values no rule reads, the raw line) show
    nowhere. A nullable integer column with no null becomes plain int64 (GX's engine, when it runs,
    compares pandas' Int64 value by value)."""
    named = {rule.kwargs.get("column") for rule in rules}
    view = frame[[c for c in frame.columns if c in named]]
    for column in view.columns:
        series = view[column]
        if isinstance(series.dtype, pd.Int64Dtype) and not series.hasnans:
            view = view.assign(**{column: series.to_numpy("int64")})
    return view


def evaluation_order(items: list) -> list:
    """The order GX's validator evaluates (and reports) a suite's expectations in: grouped by
    column, in the order each column first appears, table-level ones with the first of them."""
    groups: dict[str, list] = {}
    for item in items:
        column = item.kwargs.get("column")
        groups.setdefault(column if isinstance(column, str) else "_nocolumn", []).append(item)
    return [item for group in groups.values() for item in group]
