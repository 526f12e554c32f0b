"""Great Expectations: one file-based context (Data Docs accumulate across runs), suites and
checkpoints declared from the rules in code, run on each validation frame."""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from winecrm.core.settings import ValidationConfig
from winecrm.etl.contract import Dataset
from winecrm.etl.rules import Rule, rules_for

if TYPE_CHECKING:
    import pandas as pd

WARNINGS_SUFFIX = "_warnings"


def _silence_gx() -> None:
    """GX logs at INFO/DEBUG a line per registered metric function ("Skipping registering
    function … because it is a closure": ~200 per run) and per store operation; task logs are
    for people. Its warnings and errors still show."""
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context",
                 "great_expectations.expectations", "great_expectations.expectations.registry",
                 "great_expectations.execution_engine"):
        logging.getLogger(name).setLevel(logging.WARNING)


_template_cache = None


def _reuse_compiled_data_docs_templates() -> None:
    """GX renders each Data Docs page with a new Jinja environment of its own, so it parses and
    compiles the same packaged templates again for every page of every validation (about a third
    of a file's validation time). One in-memory bytecode cache for the process lets each of those
    environments reuse the compiled code; the templates, and so the pages, are the same (Jinja
    checks each template's source checksum before reusing its code)."""
    global _template_cache
    if _template_cache is not None:
        return
    import jinja2

    try:
        from great_expectations.render.view import view
    except ImportError:  # another GX layout: pages are still built, only slower
        return
    if not isinstance(getattr(view, "Environment", None), type) or not issubclass(view.Environment, jinja2.Environment):
        return

    class MemoryBytecodeCache(jinja2.BytecodeCache):
        def __init__(self):
            self.code: dict[str, bytes] = {}

        def load_bytecode(self, bucket) -> None:
            if bucket.key in self.code:
                bucket.bytecode_from_string(self.code[bucket.key])

        def dump_bytecode(self, bucket) -> None:
            self.code[bucket.key] = bucket.bytecode_to_string()

    cache = MemoryBytecodeCache()
    base = view.Environment

    class CachedEnvironment(base):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("bytecode_cache", cache)
            super().__init__(*args, **kwargs)

    view.Environment = CachedEnvironment
    _template_cache = cache


class Validator:
    """One GX file context per validate call; suites are (re)declared from code each time."""

    def __init__(self, docs_dir: Path, run_name: str):
        _silence_gx()  # before the import: GX logs ~200 lines while it is imported
        import great_expectations as gx

        _reuse_compiled_data_docs_templates()

        docs_dir.mkdir(parents=True, exist_ok=True)
        self.gx = gx
        self.context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
        try:
            self.context.variables.progress_bars = {"globally": False, "metric_calculations": False}
            self.context.variables.save_config()
        except Exception:  # older/newer GX without the setting: bars are cosmetic
            pass
        self.source = self.context.data_sources.add_or_update_pandas("isavigne")
        self.run_name = run_name
        self.last_run_name = ""
        self._checkpoints: dict[tuple[str, dt.date], tuple[object, list[Rule]]] = {}
        self._suites: set = set()  # suite identifiers declared: the index is built with their pages

    def declare(self, dataset: Dataset, export_date: dt.date, cfg: ValidationConfig) -> None:
        """Write the dataset's suites and checkpoint to the context now (processes forked later
        run them, and must not write the same files side by side)."""
        self._checkpoint(dataset, export_date, cfg)

    def _checkpoint(self, dataset: Dataset, export_date: dt.date, cfg: ValidationConfig):
        key = (dataset.name, export_date)
        if key in self._checkpoints:
            return self._checkpoints[key]
        gx = self.gx
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        try:
            asset = self.source.get_asset(dataset.name)
        except LookupError:
            asset = self.source.add_dataframe_asset(name=dataset.name)
        try:
            batch = asset.get_batch_definition("chunk")
        except (KeyError, LookupError, ValueError):
            batch = asset.add_batch_definition_whole_dataframe("chunk")
        rules = rules_for(dataset, export_date, cfg)
        # Two suites: rules that quarantine rows, and rules that only flag them (a malformed
        # e-mail). Data Docs then show a red ✗ on the first only when rows were quarantined, and
        # the second as warnings (see datadocs.mark_warning_suites).
        definitions = []
        for suffix, members in (("", [r for r in rules if not r.warning]),
                                (WARNINGS_SUFFIX, [r for r in rules if r.warning])):
            if not members:
                continue
            name = f"isavigne_{dataset.name}{suffix}"
            suite = gx.ExpectationSuite(name=name, expectations=[r.expectation for r in members])
            suite = self.context.suites.add_or_update(suite)
            # add_or_update returns expectations with ids; keep our Rule objects aligned by order.
            for rule, expectation in zip(members, suite.expectations):
                rule.expectation = expectation
            self._suites.add(ExpectationSuiteIdentifier(name=name))
            definitions.append(self.context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)))
        # No Data Docs action: GX's would rebuild the site's index once per suite of every
        # part; ``run`` renders the run's own pages and ``build_index`` the index once at the end.
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"isavigne_{dataset.name}", validation_definitions=definitions, actions=[],
            # COMPLETE: every failing row's line number (the quarantine needs them all). The
            # "index query" pandas would add is a copy of that list as code that neither Data Docs
            # nor the quarantine read, built with one more filter of the frame per expectation.
            result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False}))
        self._checkpoints[key] = (checkpoint, rules)
        return checkpoint, rules

    def run(self, dataset: Dataset, frame: pd.DataFrame, export_date: dt.date, cfg: ValidationConfig, batch_label: str):
        from great_expectations.core.run_identifier import RunIdentifier

        checkpoint, rules = self._checkpoint(dataset, export_date, cfg)
        # The run name becomes a folder and a link in Data Docs: keep it URL- and path-safe.
        run_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.run_name}__{batch_label}")
        result = checkpoint.run(batch_parameters={"dataframe": checked_columns(frame, rules)},
                                run_id=RunIdentifier(run_name=run_name))
        self.last_run_name = run_name
        self._render_pages(result.run_results)
        by_id = {r.expectation.id: r for r in rules}
        outcomes = []
        results = [r for validation in result.run_results.values() for r in validation.results]
        for expectation_result in results:
            config = expectation_result.expectation_config
            rule = by_id.get(config.id)
            if rule is None:
                continue
            indexes = expectation_result.result.get("unexpected_index_list") or []
            if isinstance(indexes, list) and indexes and isinstance(indexes[0], dict):
                indexes = [next(iter(i.values())) for i in indexes]
            column = config.kwargs.get("column")
            label = f"{config.type}({column})" if column else config.type
            outcomes.append((rule, label, bool(expectation_result.success), indexes,
                             expectation_result.exception_info))
        return outcomes




    def _render_pages(self, run_results) -> None:
        """The Data Docs pages of one checkpoint run (each suite's validation page and the suite's
        own page), as GX's UpdateDataDocsAction renders them, without the index."""
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        resources = []
        for identifier, validation in run_results.items():
            resources += [identifier, ExpectationSuiteIdentifier(name=validation.suite_name)]
        self.context.build_data_docs(resource_identifiers=resources, build_index=False)

    def build_index(self) -> None:
        """The Data Docs index, listing every validation on disk (this call's pages included)."""
        if self._suites:
            self.context.build_data_docs(resource_identifiers=sorted(self._suites, key=str), build_index=True)


def checked_columns(frame: pd.DataFrame, rules: list[Rule]) -> pd.DataFrame:
    """The frame GX is given: only the columns an expectation names (a column rule's own column,
    present or not, is what ExpectColumnToExist checks), same index (the file's line numbers).
    GX filters the whole frame at least twice per expectation (nulls out, then the failing rows):
    the validation frame's other columns (typed values no rule reads, the raw line) cost time
    and show nowhere. A nullable integer column with no null becomes plain int64 so GX compares
    it vectorised (it calls a Python function per value on pandas' Int64)."""
    import pandas as pd

    named = {getattr(rule.expectation, "column", None) for rule in rules}
    view = frame[[c for c in frame.columns if c in named]]
    for column in view.columns:
        series = view[column]
        if isinstance(series.dtype, pd.Int64Dtype) and not series.hasnans:
            view = view.assign(**{column: series.to_numpy("int64")})
    return view


def rebuild_data_docs(docs_dir: Path) -> None:
    """Rebuild the Data Docs site from the validation results still on disk (after a purge)."""
    _silence_gx()
    import great_expectations as gx

    from winecrm.core import settings
    from winecrm.etl.datadocs import make_offline

    _reuse_compiled_data_docs_templates()
    context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
    context.build_data_docs()
    make_offline(settings.paths().data_docs_site)
