"""Great Expectations: one file-based context (Data Docs accumulate across runs), suites and
checkpoints declared from the rules in code, run on each validation frame. The expectations are
evaluated by ``winecrm.etl.checks`` (GX's own pandas operations and result format, without the
engine's per-run machinery); GX builds, stores and renders the results. A suite holding an
expectation that module does not know runs through ``checkpoint.run`` as before."""

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

    def __init__(self, docs_dir: Path, run_name: str, direct: bool = True):
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
        # Expectations evaluated by winecrm.etl.checks rather than by GX's engine (same results,
        # stored and rendered by GX alike); False runs every chunk through checkpoint.run.
        self.direct = direct
        self._evaluated_configurations: dict = {}
        self.engine_runs = 0  # chunks that went through checkpoint.run

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
        view = checked_columns(frame, rules)
        run_id = RunIdentifier(run_name=run_name)
        run_results = self._run_directly((dataset.name, export_date), checkpoint, view, run_id) if self.direct else None
        if run_results is None:  # an expectation winecrm.etl.checks does not know: GX's own engine
            run_results = checkpoint.run(batch_parameters={"dataframe": view}, run_id=run_id).run_results
            self.engine_runs += 1
        self.last_run_name = run_name
        self._render_pages(run_results)
        by_id = {r.expectation.id: r for r in rules}
        outcomes = []
        results = [r for validation in run_results.values() for r in validation.results]
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

    def _run_directly(self, suites_key: tuple, checkpoint, view: pd.DataFrame, run_id) -> dict | None:
        """What ``checkpoint.run`` returns as ``run_results`` and stores, with each expectation
        evaluated by ``winecrm.etl.checks``; None when one of them is not known there."""
        import copy

        from great_expectations import __version__ as gx_version
        from great_expectations.core.expectation_validation_result import (
            ExpectationSuiteValidationResult, ExpectationValidationResult)
        from great_expectations.core.result_format import DEFAULT_RESULT_FORMAT
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier, ValidationResultIdentifier)
        from great_expectations.execution_engine.pandas_execution_engine import hash_pandas_dataframe
        from great_expectations.expectations.expectation import parse_result_format
        from great_expectations.validator.validator import calc_validation_statistics

        from winecrm.etl import checks

        # a copy: parse_result_format fills the dict in, and a changed checkpoint is "not fresh"
        result_format = parse_result_format(copy.deepcopy(checkpoint.result_format or DEFAULT_RESULT_FORMAT))
        plans = []
        for definition in checkpoint.validation_definitions:
            batch_id = f"{definition.data.data_asset.datasource.name}-{definition.data.data_asset.name}"
            key = (suites_key, definition.suite.name)  # the suites of one export date, as declared
            configurations = self._evaluated_configurations.get(key)
            if configurations is None:
                configurations = []
                for configuration in checks.evaluation_order(definition.suite.expectation_configurations):
                    evaluated = copy.deepcopy(configuration)
                    evaluated.kwargs.update({"batch_id": batch_id})
                    configurations.append(evaluated.to_domain_obj().configuration)
                self._evaluated_configurations[key] = configurations
            if not all(checks.supported(c.type, c.kwargs, view) for c in configurations):
                return None
            plans.append((definition, batch_id, configurations))
        fingerprint = hash_pandas_dataframe(view)
        run_results = {}
        for definition, batch_id, configurations in plans:
            load_time = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            results = []
            for configuration in configurations:
                outcome = checks.evaluate(configuration.type, configuration.kwargs, view, result_format)
                result = ExpectationValidationResult(**outcome)
                result.expectation_config = configuration
                results.append(result)
            statistics = calc_validation_statistics(results)
            asset = definition.data.data_asset
            validation = ExpectationSuiteValidationResult(
                results=results, success=statistics.success, suite_name=definition.suite.name,
                statistics={"evaluated_expectations": statistics.evaluated_expectations,
                            "successful_expectations": statistics.successful_expectations,
                            "unsuccessful_expectations": statistics.unsuccessful_expectations,
                            "success_percent": statistics.success_percent},
                meta={"great_expectations_version": gx_version,
                      "batch_spec": {"batch_data": "PandasDataFrame"},
                      "batch_markers": {"ge_load_time": load_time, "pandas_data_fingerprint": fingerprint},
                      "active_batch_definition": {"datasource_name": asset.datasource.name,
                                                  "data_connector_name": "fluent", "data_asset_name": asset.name,
                                                  "batch_identifiers": {"dataframe": "<DATAFRAME>"}},
                      "validation_id": definition.id, "checkpoint_id": checkpoint.id, "run_id": run_id,
                      "validation_time": run_id.run_time, "batch_parameters": {"dataframe": "<DATAFRAME>"}},
                batch_id=batch_id)
            suite_identifier = ExpectationSuiteIdentifier(name=definition.suite.name)
            identifier = ValidationResultIdentifier(batch_identifier=batch_id,
                                                    expectation_suite_identifier=suite_identifier, run_id=run_id)
            self.context.validation_results_store.store_validation_results(
                suite_validation_result=validation, suite_validation_result_identifier=identifier,
                expectation_suite_identifier=suite_identifier)
            run_results[identifier] = validation
        return run_results

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
