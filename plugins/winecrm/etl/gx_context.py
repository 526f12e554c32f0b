"""Great Expectations: one file-based context (Data Docs accumulate across runs), suites and
checkpoints declared from the rules in code. A chunk's expectations are evaluated by
``winecrm.etl.checks`` (GX's own pandas operations, without the engine's per-run machinery, in a
process that never imports GX); ``Validator.record`` gives GX's result format to what they found,
stores it and renders the pages, as ``checkpoint.run`` would. A suite holding an expectation that
module does not know runs through ``Validator.run`` (``checkpoint.run``)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from winecrm.core.settings import ValidationConfig
from winecrm.etl import found
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
    checks each template's source checksum before reusing its code). The compiled code is kept
    on disk too (``<data>/cache/data-docs-templates``), for the next process: a weekly run's
    Data Docs task compiled the 25 templates it renders each time (0.06 s of its 0.3). Compiled
    code is code: the folder is the platform's own data folder, trusted as its code is."""
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

    class MemoryBytecodeCache(jinja2.FileSystemBytecodeCache):
        """In memory for this process, on disk for the next (written beside and renamed)."""

        def __init__(self, directory: Path | None):
            if directory is not None:
                super().__init__(str(directory))
            self.on_disk = directory is not None
            self.code: dict[str, bytes] = {}

        def load_bytecode(self, bucket) -> None:
            if bucket.key not in self.code and self.on_disk:
                super().load_bytecode(bucket)  # a stale or foreign file is ignored by its checksum
                if bucket.code is not None:
                    self.code[bucket.key] = bucket.bytecode_to_string()
            if bucket.key in self.code:
                bucket.bytecode_from_string(self.code[bucket.key])

        def dump_bytecode(self, bucket) -> None:
            self.code[bucket.key] = bucket.bytecode_to_string()
            if self.on_disk:
                try:
                    super().dump_bytecode(bucket)
                except OSError:  # a cache: the page is rendered either way
                    pass

    try:
        from winecrm.core import settings

        directory = settings.paths().data_dir / "cache" / "data-docs-templates"
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        directory = None
    cache = MemoryBytecodeCache(directory)
    base = view.Environment

    class CachedEnvironment(base):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("bytecode_cache", cache)
            super().__init__(*args, **kwargs)

    view.Environment = CachedEnvironment
    _template_cache = cache


def import_gx_for_data_docs() -> None:
    """GX imported in a process that only stores results and renders the Data Docs (the
    ``data_docs`` stage's). GX imports SciPy's statistics for expectations none of our suites
    declares (KL divergence, KS tests): a third of its import (1.9 → 1.3 s). Here that module is
    loaded on first use instead (``importlib.util.LazyLoader``): it loads if a page ever needs it.
    Python 3.11's lazy modules are not thread-safe on their first use, so this is done only where
    the Data Docs have the process to themselves (``run_all``'s process for them, Airflow's task);
    under ``airflow dags test``, which runs every task in one process, the first use is the chance
    to buy's import thread, while nothing else touches SciPy.

    Altair likewise (0.12 s): GX imports it for the charts of one expectation we never declare
    (KL divergence), as ``import altair as alt``, which a lazy module cannot defer (the import
    system reads its ``__spec__``, and a lazy module loads on any attribute). ``_until_used``
    gives it a module whose own attributes are set and whose code runs on the first other one."""
    import importlib.util
    import sys

    from winecrm.core.imports import collector_paused

    _silence_gx()
    if "great_expectations" in sys.modules:
        return
    with collector_paused():  # 1.19 -> 0.89 s
        if "scipy.stats" not in sys.modules:
            spec = importlib.util.find_spec("scipy.stats")  # imports the scipy package (its submodules load lazily)
            if spec is not None and spec.loader is not None:
                spec.loader = importlib.util.LazyLoader(spec.loader)
                stats = importlib.util.module_from_spec(spec)
                sys.modules["scipy.stats"] = stats
                spec.loader.exec_module(stats)
                sys.modules["scipy"].stats = stats  # GX's `from scipy import stats` takes it as it is
        if "altair" not in sys.modules:
            _until_used("altair")
        import great_expectations  # noqa: F401


def _until_used(name: str) -> None:
    """``name`` imported without running its code until an attribute other than the import
    system's own (``__spec__``, ``__path__``, ...) is read: the module object is the real one,
    its code then runs in it (``exec_module``), so every reference taken meanwhile sees it."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return

    class UntilUsed(types.ModuleType):
        def __getattr__(self, attribute: str):
            self.__class__ = types.ModuleType
            spec.loader.exec_module(self)
            return getattr(self, attribute)

    module = importlib.util.module_from_spec(spec)
    module.__class__ = UntilUsed
    sys.modules[name] = module


class _ImportAhead:
    """GX's import done ahead of the ``data_docs`` stage in its process (``import_ahead``)."""

    def __init__(self):
        import threading

        self.started = False
        self.done = threading.Event()
        self.span = (0.0, 0.0)  # perf_counter at its start and end


_AHEAD = _ImportAhead()


def import_ahead() -> None:
    """GX's import done ahead of the ``data_docs`` stage, while another stage works on the other
    core (``winecrm.pipeline.stages.run_all``). The stage adds the part done before its turn to
    its own time (``imported_ahead_seconds``), so its recorded time stays what it costs."""
    import time

    _AHEAD.started = True
    started = time.perf_counter()
    try:
        import_gx_for_data_docs()
        _reuse_compiled_data_docs_templates()
    finally:
        _AHEAD.span = (started, time.perf_counter())
        _AHEAD.done.set()


def imported_ahead_seconds(stage_started: float) -> float:
    """The seconds ``import_ahead`` worked in this process before ``stage_started`` (a
    ``perf_counter`` reading): the rest of it, the stage waited for and counts already."""
    if not _AHEAD.started:
        return 0.0
    _AHEAD.done.wait()
    start, end = _AHEAD.span
    return max(0.0, min(end, stage_started) - start)


class Declared(NamedTuple):
    """A dataset's suites as declared for one export date."""
    checkpoint: object
    rules: list[Rule]
    rule_of: dict[str, int]  # GX expectation id -> position of its rule
    reported: dict[str, list]  # per suite: its expectations as GX's validator reports them (order, batch id)


class Validator:
    """One GX file context per validate call; suites are (re)declared from code each time."""

    def __init__(self, docs_dir: Path, run_name: str):
        _silence_gx()  # before the import: GX logs ~200 lines while it is imported
        from winecrm.core.imports import collector_paused

        with collector_paused():
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
        self.source = self.context.data_sources.add_or_update_pandas(found.DATASOURCE)
        self.run_name = run_name
        self._checkpoints: dict[tuple[str, dt.date], Declared] = {}  # per (dataset, export date)
        self._suites: set = set()  # suite identifiers declared: the index is built with their pages
        self._unrendered: list = []  # validations stored, their pages left to build_index

    def _checkpoint(self, dataset: Dataset, export_date: dt.date, cfg: ValidationConfig) -> Declared:
        key = (dataset.name, export_date)
        if key in self._checkpoints:
            return self._checkpoints[key]
        gx = self.gx
        import copy

        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier
        from great_expectations.expectations.registry import get_expectation_impl

        from winecrm.etl import checks

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
        definitions, members_of = [], []
        for suffix, members in (("", [i for i, r in enumerate(rules) if not r.warning]),
                                (WARNINGS_SUFFIX, [i for i, r in enumerate(rules) if r.warning])):
            if not members:
                continue
            name = f"{found.SUITE_PREFIX}{dataset.name}{suffix}"
            expectations = [get_expectation_impl(rules[i].kind)(**rules[i].kwargs, meta=rules[i].meta)
                            for i in members]
            self._suites.add(ExpectationSuiteIdentifier(name=name))
            definitions.append(gx.ValidationDefinition(
                name=name, data=batch, suite=gx.ExpectationSuite(name=name, expectations=expectations)))
            members_of.append(members)
        # Declared once, through the checkpoint: its add_or_update adds or updates each validation
        # definition and, through it, each suite (adding or updating them first as well wrote
        # every suite three times: 6 suite comparisons of O(n^2) expectation equality a chunk).
        # No Data Docs action: GX's would rebuild the site's index once per suite of every
        # part; ``run`` renders the run's own pages and ``build_index`` the index once at the end.
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"{found.SUITE_PREFIX}{dataset.name}", validation_definitions=definitions, actions=[],
            # COMPLETE: every failing row's line number (the quarantine needs them all). The
            # "index query" pandas would add is a copy of that list as code that neither Data Docs
            # nor the quarantine read, built with one more filter of the frame per expectation.
            result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False}))
        definitions = checkpoint.validation_definitions
        rule_of: dict[str, int] = {}  # GX expectation id -> position of its rule
        for definition, members in zip(definitions, members_of):
            # each definition's suite is the one stored: its expectations with their ids, in order
            for i, expectation in zip(members, definition.suite.expectations, strict=True):
                rule_of[expectation.id] = i
        batch_id = f"{self.source.name}-{asset.name}"
        reported = {}
        for definition in definitions:
            reported[definition.suite.name] = []
            for configuration in checks.evaluation_order(definition.suite.expectation_configurations):
                configuration = copy.deepcopy(configuration)
                configuration.kwargs.update({"batch_id": batch_id})
                reported[definition.suite.name].append(configuration.to_domain_obj().configuration)
        self._checkpoints[key] = Declared(checkpoint, rules, rule_of, reported)
        return self._checkpoints[key]

    def run(self, dataset: Dataset, frame: pd.DataFrame, export_date: dt.date, cfg: ValidationConfig, batch_label: str,
            run_time: dt.datetime):
        """Run the suites on one chunk through GX's own engine (``checkpoint.run``), store and
        render the results (filed under ``run_time``); returns (rule, label, success, failing
        indexes, exception info) per expectation."""
        from great_expectations.core.run_identifier import RunIdentifier

        from winecrm.etl.checks import checked_columns

        checkpoint, rules, rule_of, _ = self._checkpoint(dataset, export_date, cfg)
        run_id = RunIdentifier(run_name=found.run_name_of(self.run_name, batch_label), run_time=run_time)
        run_results = checkpoint.run(batch_parameters={"dataframe": checked_columns(frame, rules)},
                                     run_id=run_id).run_results
        self._render_pages(run_results)
        outcomes = []
        for validation in run_results.values():
            for expectation_result in validation.results:
                config = expectation_result.expectation_config
                if config.id not in rule_of:
                    continue
                rule = rules[rule_of[config.id]]
                indexes = expectation_result.result.get("unexpected_index_list") or []
                if isinstance(indexes, list) and indexes and isinstance(indexes[0], dict):
                    indexes = [next(iter(i.values())) for i in indexes]
                outcomes.append((rule, rule.label, bool(expectation_result.success), indexes,
                                 expectation_result.exception_info))
        return outcomes

    def record(self, dataset: Dataset, export_date: dt.date, cfg: ValidationConfig, metrics: list[dict],
               fingerprint: str, run_name: str, run_time: dt.datetime, *, render: bool = True) -> None:
        """Store and render what ``checkpoint.run`` would have, from each rule's evaluation by
        ``winecrm.etl.checks`` (``metrics``, in the rules' order) on a chunk whose batch
        fingerprint is ``fingerprint``, filed under ``run_name`` and ``run_time``. ``render``
        False: the pages are rendered by ``build_index``, all in one pass."""
        import copy

        from great_expectations import __version__ as gx_version
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.core.expectation_validation_result import (
            ExpectationSuiteValidationResult, ExpectationValidationResult)
        from great_expectations.core.result_format import DEFAULT_RESULT_FORMAT
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier, ValidationResultIdentifier)
        from great_expectations.expectations.expectation import _format_map_output, parse_result_format
        from great_expectations.validator.validator import calc_validation_statistics

        checkpoint, _, rule_of, reported = self._checkpoint(dataset, export_date, cfg)
        run_id = RunIdentifier(run_name=run_name, run_time=run_time)
        # a copy: parse_result_format fills the dict in, and a changed checkpoint is "not fresh"
        result_format = parse_result_format(copy.deepcopy(checkpoint.result_format or DEFAULT_RESULT_FORMAT))
        run_results = {}
        for definition in checkpoint.validation_definitions:
            asset = definition.data.data_asset
            batch_id = f"{asset.datasource.name}-{asset.name}"
            load_time = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            results = []
            for configuration in reported[definition.suite.name]:
                measured = metrics[rule_of[configuration.id]]
                if "element_count" in measured:  # a column map expectation
                    outcome = _format_map_output(
                        result_format=result_format, success=measured["success"],
                        element_count=measured["element_count"], nonnull_count=measured["nonnull_count"],
                        unexpected_count=measured["unexpected_count"], unexpected_list=measured["unexpected_list"],
                        unexpected_index_list=measured["unexpected_index_list"], unexpected_index_query=None,
                        unexpected_index_column_names=None)
                else:
                    observed = {"observed_value": measured["observed_value"]} if "observed_value" in measured else {}
                    outcome = {"success": measured["success"], "result": observed}
                result = ExpectationValidationResult(**outcome)
                result.expectation_config = configuration
                results.append(result)
            statistics = calc_validation_statistics(results)
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
        if render:
            self._render_pages(run_results)
        else:
            self._unrendered += list(run_results)

    def _render_pages(self, run_results) -> None:
        """The Data Docs pages of one checkpoint run (each suite's validation page and the suite's
        own page), as GX's UpdateDataDocsAction renders them, without the index."""
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        resources = []
        for identifier, validation in run_results.items():
            resources += [identifier, ExpectationSuiteIdentifier(name=validation.suite_name)]
        self.context.build_data_docs(resource_identifiers=resources, build_index=False)

    def build_index(self) -> None:
        """The Data Docs index, listing every validation on disk, the suites' pages and the
        validation pages ``record`` left to render (one site build for them all)."""
        if self._suites:
            self.context.build_data_docs(resource_identifiers=self._unrendered + sorted(self._suites, key=str),
                                         build_index=True)
            self._unrendered = []


def record_found(run_id: str) -> dict:
    """The ``data_docs`` task: what validate found in each chunk of the run (``winecrm.etl.found``)
    stored as GX validation results and rendered as Data Docs pages, then the site's index."""
    from winecrm.core import settings
    from winecrm.core.storage import run_work_dir
    from winecrm.etl.contract import DATASETS
    from winecrm.etl.datadocs import make_offline

    paths = settings.paths()
    records = found.files(run_work_dir(run_id))
    if not records:
        return {"chunks": 0}
    validator = Validator(paths.docs_dir, run_id)
    for path in records:
        chunk = found.load(path)
        validator.record(DATASETS[chunk.dataset], chunk.export_date, ValidationConfig.model_validate(chunk.settings),
                         chunk.metrics, chunk.fingerprint, chunk.run_name, chunk.run_time, render=False)
    validator.build_index()
    make_offline(paths.data_docs_site)
    return {"chunks": len(records)}


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
