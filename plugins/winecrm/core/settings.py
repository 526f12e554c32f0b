"""Runtime settings: environment variables first, then the YAML files, read through one validated model.

Everything a deployment tunes lives either in the environment (paths, URLs, secrets) or in
``include/config/pipeline.yaml`` and ``include/config/scoring.yaml`` (thresholds and business
rules). Each YAML file is validated as a whole by a pydantic model: a typo in a key or a value
of the wrong kind fails at once (``prepare_run`` loads both) with the file, the key and the
reason — never later as a ``KeyError`` in the middle of a load. Nothing is read at import time.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[3]
INCLUDE_DIR = Path(os.environ.get("CRM_INCLUDE_DIR") or PROJECT_ROOT / "include")
SQL_DIR = INCLUDE_DIR / "sql"
CONFIG_DIR = INCLUDE_DIR / "config"
TEMPLATES_DIR = INCLUDE_DIR / "templates"


class ConfigError(ValueError):
    """A settings file is invalid: the message names the file, the key and the reason."""


class EnvironmentPaths(BaseSettings):
    """Where this deployment keeps its files, from the environment (``CRM_DATA_DIR``,
    ``CRM_RAW_DIR``, ``CRM_WORK_URL``, ``CRM_DOCS_DIR``, ``CRM_OUTBOX_DIR``, ``CRM_REPORTS_DIR``,
    ``CRM_DATA_DOCS_URL``); unset or empty: under the data folder (``.crm`` in a checkout)."""

    model_config = SettingsConfigDict(env_prefix="CRM_", env_ignore_empty=True, extra="ignore")
    data_dir: Path | None = None
    raw_dir: Path | None = None
    work_url: str | None = None
    docs_dir: Path | None = None
    outbox_dir: Path | None = None
    reports_dir: Path | None = None
    data_docs_url: str = ""


_PATH_VARIABLES = tuple(f"CRM_{name.upper()}" for name in EnvironmentPaths.model_fields)


def environment_paths() -> EnvironmentPaths:
    """The CRM_* path settings as the environment has them now (read again only when one of
    them changed: some callers ask once per SMS or per work file)."""
    return _environment_paths(tuple(os.environ.get(name) for name in _PATH_VARIABLES))


@lru_cache(maxsize=8)
def _environment_paths(values: tuple) -> EnvironmentPaths:
    return EnvironmentPaths()


def _local(path: Path | None, default: Path) -> Path:
    return path.expanduser().resolve() if path else default


@dataclass(frozen=True)
class Paths:
    data_dir: Path  # local runtime state (embedded PostgreSQL, Data Docs)
    raw_dir: Path  # root of the RAW exports: <raw_dir>/isavigne/<dataset>/...
    work_url: str  # per-run intermediate files: a local path or a storage URL (s3://..., gs://...)
    docs_dir: Path  # Great Expectations project (Data Docs live under it)
    outbox_dir: Path  # dry-run e-mails (.eml), one folder per campaign
    reports_dir: Path  # weekly reports (HTML + JSON), one folder per week

    @property
    def data_docs_site(self) -> Path:
        return self.docs_dir / "gx" / "uncommitted" / "data_docs" / "local_site"

    @property
    def data_docs_index(self) -> Path:
        return self.data_docs_site / "index.html"

    def data_docs_link(self, page: str = "index.html") -> str:
        """Where a person opens a Data Docs page: through the Airflow UI when CRM_DATA_DOCS_URL
        says where the plugin serves them (e.g. http://localhost:8080/winecrm/data-docs), else
        the file on disk."""
        base = environment_paths().data_docs_url.rstrip("/")
        return f"{base}/{page}" if base else str(self.data_docs_site / page)


def paths() -> Paths:
    env = environment_paths()
    data_dir = _local(env.data_dir, PROJECT_ROOT / ".crm")
    return Paths(
        data_dir=data_dir,
        raw_dir=_local(env.raw_dir, data_dir / "raw"),
        work_url=env.work_url or str(data_dir / "work"),
        docs_dir=_local(env.docs_dir, data_dir / "quality"),
        outbox_dir=_local(env.outbox_dir, data_dir / "outbox"),
        reports_dir=_local(env.reports_dir, data_dir / "reports"),
    )


# --------------------------------------------------------------------------------------------
# pipeline.yaml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleConfig(_Section):
    # The estate's time zone, the one setting for it: the Monday schedule, the weeks, the dates and
    # times people read, the SMS hours (winecrm.core.weeks.estate_zone).
    timezone: str = "Europe/Paris"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Paris)") from None
        return value


class ExportsConfig(_Section):
    required_datasets: list[Literal["ventes_lignes", "clients", "produits", "stock"]] = Field(
        default_factory=lambda: ["ventes_lignes", "clients", "produits", "stock"], min_length=1)
    # Of those, the datasets that need an export dated in the run's week. The others are
    # snapshots (customers, catalogue, stock): the latest export at or before the week will do.
    weekly_datasets: list[Literal["ventes_lignes", "clients", "produits", "stock"]] = Field(
        default_factory=lambda: ["ventes_lignes"])
    max_wait_hours: float = Field(6, gt=0)
    poke_interval_seconds: int = Field(300, ge=10)

    @model_validator(mode="after")
    def _weekly_are_required(self) -> "ExportsConfig":
        extra = set(self.weekly_datasets) - set(self.required_datasets)
        if extra:
            raise ValueError(f"weekly_datasets: {', '.join(sorted(extra))} not in required_datasets")
        return self


class FilesConfig(_Section):
    settle_seconds: float = Field(120, ge=0)
    chunk_rows: int = Field(125_000, ge=1)
    # XLSX is a zip of XML: refuse workbooks that would expand beyond these (zip bombs).
    max_xlsx_uncompressed_mb: float = Field(1_000, gt=0)
    max_xlsx_compression_ratio: float = Field(200, gt=1)


class ValidationConfig(_Section):
    document_types: list[str] = Field(default_factory=lambda: ["VENTE", "FACTURE", "BL", "AVOIR"], min_length=1)
    max_qty_line: float = Field(5000, gt=0)
    max_unit_price_ht: float = Field(5000, gt=0)
    max_line_amount_ht: float = Field(250_000, gt=0)
    min_sale_date: dt.date = dt.date(2000, 1, 1)
    max_days_after_export: int = Field(7, ge=0)
    max_stock_quantity: float = Field(10_000_000, gt=0)
    workers: int = Field(2, ge=1)  # >1: chunks checked in a forked process beside the task's (pipeline.yaml)

    @field_validator("document_types")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [v.strip().upper() for v in value]


class RevenueConfig(_Section):
    # Which sales document types are sales (revenue, orders) and which reduce them. A delivery note
    # (BL) and its invoice (FACTURE) describe the same sale: counting both doubles revenue.
    sale_document_types: list[str] = Field(default_factory=lambda: ["VENTE", "FACTURE"], min_length=1)
    credit_note_types: list[str] = Field(default_factory=lambda: ["AVOIR"])

    @field_validator("sale_document_types", "credit_note_types")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [v.strip().upper() for v in value]

    @model_validator(mode="after")
    def _disjoint(self) -> "RevenueConfig":
        both = set(self.sale_document_types) & set(self.credit_note_types)
        if both:
            raise ValueError(f"document types both sale and credit note: {', '.join(sorted(both))}")
        return self

    def query_parameters(self) -> dict:
        """The named-query parameters: sale types, and those plus credit notes."""
        return {"sale_types": list(self.sale_document_types),
                "counted_types": list(self.sale_document_types) + list(self.credit_note_types)}


class QualityGateLimits(_Section):
    """One dataset's override of the gate: either key, the other one stays the default's."""
    max_bad_row_share: float | None = Field(None, ge=0, le=1)
    min_bad_rows_to_reject: int | None = Field(None, ge=1)


class QualityGateConfig(_Section):
    # A file is rejected only when its bad rows are more than max_bad_row_share of its rows AND
    # at least min_bad_rows_to_reject: one or two bad rows in a small estate's 16-line file are
    # quarantined, they do not fail the week.
    max_bad_row_share: float = Field(0.05, ge=0, le=1)
    min_bad_rows_to_reject: int = Field(3, ge=1)
    # per dataset: a share (``clients: 0.1``) or both keys (``clients: {max_bad_row_share: 0.1,
    # min_bad_rows_to_reject: 5}``)
    per_dataset: dict[Literal["ventes_lignes", "clients", "produits", "stock"], float | QualityGateLimits] = Field(
        default_factory=dict)

    def _override(self, dataset: str) -> QualityGateLimits:
        value = self.per_dataset.get(dataset)
        if isinstance(value, QualityGateLimits):
            return value
        return QualityGateLimits(max_bad_row_share=value)

    def limit(self, dataset: str) -> float:
        share = self._override(dataset).max_bad_row_share
        return float(self.max_bad_row_share if share is None else share)

    def min_bad_rows(self, dataset: str) -> int:
        count = self._override(dataset).min_bad_rows_to_reject
        return int(self.min_bad_rows_to_reject if count is None else count)


class WarehouseConfig(_Section):
    # One writer at a time: how long a second writer waits for the first before failing.
    writer_wait_minutes: float = Field(60, ge=0)
    # Per statement / per lock wait, so a hung COPY or a blocked table fails loudly instead of
    # blocking every later Monday. 0 disables.
    statement_timeout_minutes: float = Field(30, ge=0)
    lock_timeout_minutes: float = Field(5, ge=0)


class TimeoutsConfig(_Section):
    task_minutes: float = Field(60, gt=0)  # execution_timeout of each task (the sensor has its own)
    run_hours: float = Field(20, gt=0)  # dagrun_timeout: the whole run, sensor wait included


class RetentionConfig(_Section):
    # RGPD: raw values of rejected rows (names, e-mail addresses) and the Data Docs pages that
    # show them are kept this long, then purged by the weekly run.
    quarantine_raw_values_days: int = Field(90, ge=1)
    data_docs_days: int = Field(90, ge=1)
    work_files_days: int = Field(14, ge=1)
    # the HTML and text of e-mails already sent, simulated or skipped (crm.email_sends keeps the
    # subject, products, status and ids), and the dry-run outbox folders
    email_bodies_days: int = Field(30, ge=1)
    # the dry-run SMS outbox (outbox/sms/<day>.jsonl: phone numbers and texts), file by file
    sms_outbox_days: int = Field(30, ge=1)
    # Brevo and behaviour events as received (crm.webhook_events.payload), once processed
    event_payload_days: int = Field(90, ge=1)


class AlertsConfig(_Section):
    email: str = ""
    webhook_url: str = ""


class PipelineConfig(_Section):
    schedule: ScheduleConfig = ScheduleConfig()
    exports: ExportsConfig = ExportsConfig()
    files: FilesConfig = FilesConfig()
    validation: ValidationConfig = ValidationConfig()
    revenue: RevenueConfig = RevenueConfig()
    quality_gate: QualityGateConfig = QualityGateConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    retention: RetentionConfig = RetentionConfig()
    alerts: AlertsConfig = AlertsConfig()

    @model_validator(mode="after")
    def _revenue_types_are_accepted(self) -> "PipelineConfig":
        unknown = set(self.revenue.sale_document_types + self.revenue.credit_note_types) \
            - set(self.validation.document_types)
        if unknown:
            raise ValueError(f"revenue: {', '.join(sorted(unknown))} not in validation.document_types")
        return self


# --------------------------------------------------------------------------------------------
# scoring.yaml


class RfmFixed(_Section):
    recency_days: tuple[int, int, int] = (30, 90, 180)
    orders: tuple[int, int, int] = (2, 4, 8)
    revenue_ht: tuple[float, float, float] = (150, 400, 1000)


class RfmConfig(_Section):
    method: Literal["quartiles", "fixed"] = "quartiles"
    fixed: RfmFixed = RfmFixed()


class SegmentsConfig(_Section):
    churn_after_days: int = Field(180, gt=0)
    vip_min: float = Field(3.5, ge=1, le=4)
    standard_min: float = Field(1.5, ge=1, le=4)


class LeadScoreConfig(_Section):
    base: int = 50
    per_rfm_point: float = 10
    rfm_cap: float = 40
    engagement_cap: float = 20          # on the sum of the rules' score changes (crm.score_changes)
    per_purchase: float = 5
    purchase_cap: float = 25


class AffinityConfig(_Section):
    min_pair_customers: int = Field(2, ge=1)


Scenario = Literal["cross_sell", "rebuy", "winback"]


class RecommendationsConfig(_Section):
    scenario_by_segment: dict[Literal["VIP", "Standard", "At Risk", "Churn"], Scenario] = Field(
        default_factory=lambda: {"VIP": "cross_sell", "Standard": "cross_sell", "At Risk": "rebuy",
                                 "Churn": "winback"})
    max_products: int = Field(3, ge=1, le=10)
    silence_days: int = Field(135, ge=0)
    recent_purchase_days: int = Field(60, ge=0)
    winback_min_revenue_ht: float = Field(100, ge=0)
    # the code the customer types: it is read in a « vous » e-mail, so never an imperative that
    # says « tu » (« REVIENS15 »)
    winback_offer_code: str = "RETOUR15"
    winback_discount_pct: int = Field(15, ge=0, le=100)
    control_share: float = Field(0.10, ge=0, lt=1)
    neighbours_per_article: int = Field(20, ge=1)
    cross_sell_similarity: Literal["cosine", "jaccard", "confidence"] = "confidence"
    taste_weight: float = Field(0.3, ge=0, le=1)
    recency_half_life_cycles: float = Field(3, gt=0)
    recency_floor: float = Field(0.3, ge=0, le=1)
    rebuy_due_boost: float = Field(0, ge=0)
    # no trading down: the premium wines of a family (grape and colour), by words in their name or
    # by the catalogue's premium_tier; their buyers are not offered the family's entry-level wine
    no_trading_down: bool = True
    premium_markers: list[str] = Field(default_factory=lambda: [
        "grand cru", "vendanges tardives", "sélection de grains nobles", "lieu-dit", "fût de chêne"])
    premium_catalogue_tiers: list[str] = Field(default_factory=list)
    # the win-back offer: its scope, how long it lasts, the formats it leaves out, and the lapse
    # after which a customer gets a quiet word instead of a discount
    winback_offer_scope: Literal["order", "wines"] = "order"
    winback_offer_valid_days: int = Field(30, ge=1, le=365)
    winback_offer_excludes: list[Literal["carton", "magnum", "grand_format", "petit_format"]] = Field(
        default_factory=lambda: ["carton", "magnum"])
    winback_soft_after_days: int = Field(730, ge=0)

    def scenario(self, segment: str) -> str:
        defaults = RecommendationsConfig.model_fields["scenario_by_segment"].default_factory()
        return {**defaults, **self.scenario_by_segment}[segment]

    @field_validator("winback_offer_code")
    @classmethod
    def _offer_code_says_vous(cls, code: str) -> str:
        if re.search(r"REVIENS|VIENS|PROFITE(?!Z)|CRAQUE(?!Z)|FONCE(?!Z)|DECOUVRE(?!Z)|GOUTE(?!Z)", code.upper()):
            raise ValueError(f"winback_offer_code {code!r} says « tu » to customers the e-mails call « vous »: "
                             "choose a code such as RETOUR15")
        return code


class BuyProbabilityConfig(_Section):
    """The chance to buy within a horizon (winecrm.crm.propensity; scoring.yaml documents each key)."""

    horizon_days: int = Field(90, ge=7, le=730)
    training_cutoffs: int = Field(8, ge=1, le=60)
    recency_half_life_cutoffs: float = Field(0, ge=0)
    recent_orders_half_life_days: float = Field(180, gt=0)
    regularisation_c: float = Field(0.1, gt=0)
    recalibrate_on_newest_cutoff: bool = True
    bgnbd_weight: float = Field(0.7, ge=0, le=1)
    min_training_cutoffs: int = Field(2, ge=1)
    min_examples: int = Field(300, ge=1)
    min_buyers: int = Field(30, ge=1)
    uncertainty_refits: int = Field(20, ge=0, le=200)
    uncertainty_max_examples: int = Field(20000, ge=0)
    level_sd: float = Field(0.3, ge=0, le=3)
    history_view: Literal["auto", "acquisition", "already_customers"] = "auto"
    spend_days: int = Field(365, ge=30, le=1095)
    spend_interval: float = Field(0.80, gt=0, lt=1)
    spend_draws: int = Field(200, ge=50, le=5000)
    seed: int = 0


class ScoringConfig(_Section):
    rfm: RfmConfig = RfmConfig()
    segments: SegmentsConfig = SegmentsConfig()
    lead_score: LeadScoreConfig = LeadScoreConfig()
    affinity: AffinityConfig = AffinityConfig()
    recommendations: RecommendationsConfig = RecommendationsConfig()
    buy_probability: BuyProbabilityConfig = BuyProbabilityConfig()


# --------------------------------------------------------------------------------------------
# campaigns.yaml


class EstateConfig(_Section):
    """Who the e-mails come from: shown in every e-mail's header and legal footer."""

    name: str = Field(min_length=1)
    address: str = Field(min_length=1)           # postal address: required in commercial e-mail
    website_url: str = Field(pattern=r"^https://")
    logo_url: str | None = Field(None, pattern=r"^https://")
    sender_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    sender_name: str = Field(min_length=1)
    reply_to: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    legal_mentions: str = ""                     # e.g. SIRET, licence; « L'abus d'alcool … » is always added


class LinksConfig(_Section):
    """Where the e-mails point; {article}, {token} are filled per e-mail."""

    product_url: str = Field(pattern=r"^https://.*\{article\}")
    shop_url: str = Field(pattern=r"^https://")
    unsubscribe_url: str = Field(pattern=r"^https://.*\{token\}")
    unsubscribe_mailto: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    utm_source: str = "brevo"
    utm_medium: str = "email"


class SendingConfig(_Section):
    """How e-mails leave (winecrm.campaigns.send)."""

    batch_size: int = Field(1000, ge=1, le=1000)          # messageVersions per call (Brevo: 1000, 2000 recipients)
    request_timeout_s: float = Field(30, gt=0)
    max_attempts: int = Field(5, ge=1)                     # per call, for 429 and safe retries
    max_rate_limit_wait_s: float = Field(120, ge=0)        # a 429 asking for longer fails the task (retried later)
    # a call whose answer was lost is repeated under its idempotencyKey only this long; later, looked up
    idempotency_window_minutes: int = Field(10, ge=1)
    tags: list[str] = Field(default_factory=lambda: ["crm-hebdo"])

    @field_validator("idempotency_window_minutes")
    @classmethod
    def _within_the_key_lifetime(cls, minutes: int) -> int:
        if minutes > 10:
            raise ValueError(
                f"{minutes} minutes: Brevo documents an idempotencyKey's lifetime as 30 minutes today and as 15 in "
                "an older changelog, so never rely on more than 10 minutes (past that, the send looks the batch "
                "up in Brevo's log instead of repeating it)")
        return minutes


class ContactsConfig(_Section):
    """Where ``python -m winecrm.campaigns sync-contacts`` imports the customers in Brevo."""

    list_id: int | None = Field(None, ge=1)      # a Brevo contact list's id; None: found or created by name
    list_name: str = Field("Clients du domaine (CRM)", min_length=1)
    folder_name: str = Field("CRM", min_length=1)  # for the list, only when the account has no folder


class ReportConfig(_Section):
    """The weekly report (winecrm.campaigns.report)."""

    uplift_days: int = Field(30, ge=7, le=180)   # purchases counted this long after a live campaign


class ApprovalConfig(_Section):
    notify_email: str = ""  # who approves live campaigns: told by e-mail when one waits


class CampaignsConfig(_Section):
    estate: EstateConfig
    links: LinksConfig
    sending: SendingConfig = SendingConfig()
    contacts: ContactsConfig = ContactsConfig()
    report: ReportConfig = ReportConfig()
    approval: ApprovalConfig = ApprovalConfig()


def campaigns_config_path() -> str:
    return os.environ.get("CRM_CAMPAIGNS_CONFIG", str(CONFIG_DIR / "campaigns.yaml"))


def campaigns_config() -> CampaignsConfig:
    """The validated campaigns YAML (``CRM_CAMPAIGNS_CONFIG`` overrides its location)."""
    path = campaigns_config_path()
    return _load("campaigns", path, os.path.getmtime(path))


# --------------------------------------------------------------------------------------------
# loading


def describe_validation(error: ValidationError, path: str, place=None) -> str:
    """A configuration file's problems on one line each: where (the key path, or what
    ``place(loc)`` calls it, e.g. « rule welcome: delay »), what is wrong, the value given."""
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        where = (place(loc) if place else None) or ".".join(str(p) for p in loc) or "(top level)"
        got = item.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        lines.append(f"{where}: {item['msg']}{shown}")
    return f"{path}: " + "; ".join(lines)


def parse_config(model: type[BaseModel], raw: dict | None, path: str):
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(describe_validation(exc, path)) from None


@lru_cache(maxsize=8)
def _load(model_name: str, path: str, mtime: float):
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_config({"pipeline": PipelineConfig, "scoring": ScoringConfig,
                         "campaigns": CampaignsConfig}[model_name], raw, path)


def pipeline_config_path() -> str:
    return os.environ.get("CRM_PIPELINE_CONFIG", str(CONFIG_DIR / "pipeline.yaml"))


def scoring_config_path() -> str:
    return os.environ.get("CRM_SCORING_CONFIG", str(CONFIG_DIR / "scoring.yaml"))


def raw_yaml(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def pipeline_config() -> PipelineConfig:
    """The validated pipeline YAML (``CRM_PIPELINE_CONFIG`` overrides its location)."""
    path = pipeline_config_path()
    return _load("pipeline", path, os.path.getmtime(path))


def scoring_config() -> ScoringConfig:
    """The validated scoring / recommendation YAML (``CRM_SCORING_CONFIG`` overrides its location)."""
    path = scoring_config_path()
    return _load("scoring", path, os.path.getmtime(path))


def scoring_from(cfg: "ScoringConfig | dict | None") -> ScoringConfig:
    """The scoring settings to use: the file's when None, else the given model or mapping
    (a mapping is validated like the file, e.g. the backtest's --set variants, tests)."""
    if cfg is None:
        return scoring_config()
    if isinstance(cfg, ScoringConfig):
        return cfg
    return parse_config(ScoringConfig, cfg, "scoring.yaml")


def check_all() -> None:
    """Validate every settings file now (``prepare_run`` calls it, so a bad file fails the run
    in its first task, naming the key, instead of halfway through)."""
    pipeline_config()
    scoring_config()
    campaigns_config()
