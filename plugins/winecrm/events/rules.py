"""The automation rules (``include/config/automation_rules.yaml``): their model, checks and triggers.

A rule = a trigger, conditions, actions (each with an optional delay), a priority and an enabled
flag. Loading validates everything and names the rule and the field of any mistake, so a typo
fails the first task of ``crm_events`` instead of silently never firing. Conditions become SQL
(``condition_sql``) so the DAG evaluates a rule over a whole batch of events at once;
``explain`` evaluates the same rules for one event in Python, for a person.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from functools import lru_cache
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from winecrm.core import settings

# Brevo's event names (canonical spelling, both webhook families: winecrm.events.intake maps
# « hardBounce », « unsubscribe », « sent »... onto these) -> triggers. None: stored for the
# funnel and the report, fires no rule. Apple Mail's privacy protection opens every e-mail on
# its own (proxy_open): not a person reading, so no trigger.
BREVO_TRIGGERS: dict[str, str | None] = {
    "opened": "email_opened", "unique_opened": "email_opened", "click": "email_clicked",
    "hard_bounce": "email_bounce", "blocked": "email_bounce", "invalid_email": "email_bounce",
    "soft_bounce": "email_soft_bounce", "unsubscribed": "unsubscribe", "spam": "unsubscribe",
    "proxy_open": None, "unique_proxy_open": None,
    "request": None, "delivered": None, "deferred": None, "error": None,
    "list_addition": None, "contact_updated": None, "contact_deleted": None,
}
BREVO_EVENTS = frozenset(BREVO_TRIGGERS)
# Brevo's other spellings (webhook settings, marketing payloads) -> the canonical name
BREVO_ALIASES = {"sent": "request", "invalid": "invalid_email", "unsubscribe": "unsubscribed", "clicked": "click",
                 "open": "opened", "bounce": "hard_bounce"}


@lru_cache(maxsize=512)
def canonical_brevo_event(name) -> str | None:
    """« hardBounce », « hard_bounce », « HARD_BOUNCE », « unsubscribe » -> the canonical name
    (hard_bounce, unsubscribed); None when it is no Brevo event we know."""
    if not isinstance(name, str) or not name or len(name) > 60:
        return None
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip()).lower().replace("-", "_").replace(" ", "_")
    snake = BREVO_ALIASES.get(snake, snake)
    return snake if snake in BREVO_EVENTS else None
# Engagement: a rule on these fires only for an e-mail of ours (linked to crm.email_sends) or,
# when the settings allow it, for the estate's own Brevo campaigns (marketing family) — never for
# the shop's order confirmations and other mails the same Brevo account sends.
ENGAGEMENT_TRIGGERS = ("email_opened", "email_clicked", "email_soft_bounce")
BEHAVIOR_TRIGGERS: dict[str, str] = {
    "open": "email_opened", "click": "email_clicked", "purchase": "purchase",
    "form_submit": "form_submit", "page_visit": "page_visit",
}
# Consent is not a rule: these events always suppress the address (reason in crm.suppressions).
ALWAYS_SUPPRESS = {"unsubscribed": "unsubscribed", "spam": "spam", "hard_bounce": "hard_bounce",
                   "invalid_email": "invalid_email", "blocked": "blocked"}

_DELAY = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_delay(value) -> dt.timedelta:
    """« 5m », « 24h », « 2d », « 30s » (or a number of minutes)."""
    if value in (None, "", 0):
        return dt.timedelta(0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.timedelta(minutes=value)
    match = _DELAY.match(str(value))
    if not match:
        raise ValueError(f"delay {value!r}: expected a number and a unit, e.g. 30s, 5m, 24h, 2d")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Action(_Strict):
    delay: str | int | None = None

    @field_validator("delay")
    @classmethod
    def _delay_parses(cls, value):
        parse_delay(value)
        return value

    @property
    def delay_td(self) -> dt.timedelta:
        return parse_delay(self.delay)

    @property
    def params(self) -> dict:
        return self.model_dump(exclude={"type", "delay"}, exclude_none=True)


class UpdateScore(_Action):
    type: Literal["update_score"]
    points: int = Field(ge=-100, le=100)


class AddTag(_Action):
    type: Literal["add_tag"]
    tag: str = Field(pattern=r"^[a-z0-9_\-]{1,40}$")


class CreateTask(_Action):
    type: Literal["create_task"]
    title: str = Field(min_length=1, max_length=200)


class ScheduleCall(_Action):
    type: Literal["schedule_call"]
    title: str = Field("Appeler le client", min_length=1, max_length=200)


class PauseCampaign(_Action):
    type: Literal["pause_campaign"]
    days: int = Field(30, ge=1, le=3650)


class Suppress(_Action):
    type: Literal["suppress"]
    reason: Literal["unsubscribed", "hard_bounce", "spam", "invalid_email", "blocked", "manual"] | None = None


class SendEmail(_Action):
    type: Literal["send_email"]
    template: str

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        from winecrm.campaigns.templates import TEMPLATES

        if value not in TEMPLATES:
            raise ValueError(f"unknown e-mail template {value!r} (known: {', '.join(TEMPLATES)})")
        return value


class SendSms(_Action):
    type: Literal["send_sms"]
    text: str = Field(min_length=1, max_length=480)
    sms_type: Literal["marketing", "transactional"] = "marketing"


class TriggerWebhook(_Action):
    type: Literal["trigger_webhook"]
    url: str = Field(pattern=r"^https?://[^\s]+$")
    timeout_s: float | None = Field(None, gt=0, le=60)


Action = Annotated[Union[UpdateScore, AddTag, CreateTask, ScheduleCall, PauseCampaign, Suppress, SendEmail, SendSms,
                         TriggerWebhook], Field(discriminator="type")]
ACTION_TYPES = ("update_score", "add_tag", "create_task", "schedule_call", "pause_campaign", "suppress", "send_email",
                "send_sms", "trigger_webhook")
INTERNAL_ACTIONS = ("update_score", "add_tag", "create_task", "schedule_call", "pause_campaign", "suppress")


class Conditions(_Strict):
    segments: list[Literal["VIP", "Standard", "At Risk", "Churn", "Unknown"]] | None = None
    min_score: float | None = Field(None, ge=0, le=100)
    max_score: float | None = Field(None, ge=0, le=100)
    amount_above: float | None = None
    amount_below: float | None = None
    has_tags: list[str] | None = None
    without_tags: list[str] | None = None
    events: list[str] | None = None

    @field_validator("events")
    @classmethod
    def _known_events(cls, value):
        """Any of Brevo's spellings (hardBounce, unsubscribe...), kept under the canonical name."""
        if value is None:
            return value
        known = [e if e in BEHAVIOR_TRIGGERS or e == "lead_score_high" else canonical_brevo_event(e) for e in value]
        unknown = [e for e, k in zip(value, known) if k is None]
        if unknown:
            raise ValueError(f"unknown event names {unknown}")
        return known


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]{1,60}$")
    name: str = ""
    trigger: Literal["email_opened", "email_clicked", "email_bounce", "email_soft_bounce", "unsubscribe", "purchase",
                     "form_submit", "page_visit", "lead_score_high"]
    priority: int = Field(50, ge=1, le=100)
    enabled: bool = True
    stop: bool = False             # no lower-priority rule fires for the same event
    conditions: Conditions = Conditions()
    actions: list[Action] = Field(min_length=1)


class SmsSettings(_Strict):
    mode: Literal["dry_run", "live"] = "dry_run"
    sender: str = Field("Domaine", min_length=1, max_length=15)

    @field_validator("sender")
    @classmethod
    def _brevo_takes_it(cls, value: str) -> str:
        """At most 11 characters with letters, 15 digits only: Brevo refuses the SMS otherwise (a
        settings mistake, said once when the rules load, not an SMS per customer)."""
        from winecrm.campaigns.brevo import sms_sender_problem

        problem = sms_sender_problem(value)
        if problem:
            raise ValueError(problem)
        return value
    region: str = "FR"
    holidays_subdivision: str | None = "6AE"
    quiet_before: str = Field("08:00", pattern=r"^\d{2}:\d{2}$")
    quiet_after: str = Field("22:00", pattern=r"^\d{2}:\d{2}$")


class WebhookSettings(_Strict):
    timeout_s: float = Field(10, gt=0, le=60)


class EngineSettings(_Strict):
    batch_size: int = Field(5000, ge=1, le=100_000)
    max_attempts: int = Field(5, ge=1, le=20)
    lead_score_high: float = Field(80, ge=0, le=100)
    # opens and clicks of the campaigns the estate sends from Brevo itself (marketing webhooks)
    # count as engagement, like those of our e-mails
    engagement_from_brevo_campaigns: bool = True
    automation_emails: Literal["dry_run", "live"] = "dry_run"
    sms: SmsSettings = SmsSettings()
    webhooks: WebhookSettings = WebhookSettings()


class RuleSet(_Strict):
    settings: EngineSettings = EngineSettings()
    rules: list[Rule]

    @model_validator(mode="after")
    def _unique_ids(self) -> "RuleSet":
        ids = [r.id for r in self.rules]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"rule ids must be unique: {', '.join(twice)} used twice")
        return self

    def active(self) -> list[Rule]:
        """Enabled rules, highest priority first (ties: file order)."""
        return sorted((r for r in self.rules if r.enabled), key=lambda r: -r.priority)


def rules_path() -> str:
    return os.environ.get("CRM_AUTOMATION_RULES", str(settings.CONFIG_DIR / "automation_rules.yaml"))


def _rule_place(raw: dict):
    """Names a problem inside a rule by the rule's id (« rule welcome: delay »), not its index."""
    def place(loc: list) -> str | None:
        if not (len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int)):
            return None
        try:
            rule_id = raw["rules"][loc[1]].get("id", f"#{loc[1] + 1}")
        except (KeyError, IndexError, AttributeError, TypeError):
            rule_id = f"#{loc[1] + 1}"
        rest = [str(p) for p in loc[2:] if not (isinstance(p, str) and p in ACTION_TYPES)]
        return f"rule {rule_id}: " + (".".join(rest) or "(the rule)")
    return place


def parse_rules(raw: dict | None, path: str = "automation_rules.yaml") -> RuleSet:
    if not isinstance(raw, dict):
        raise settings.ConfigError(f"{path}: expected a mapping with 'rules' (and optional 'settings')")
    try:
        return RuleSet.model_validate(raw)
    except ValidationError as exc:
        raise settings.ConfigError(settings.describe_validation(exc, path, _rule_place(raw))) from None


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> RuleSet:
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise settings.ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_rules(raw, path)


def load_rules(path: str | None = None) -> RuleSet:
    path = path or rules_path()
    return _load(path, os.path.getmtime(path))


# --------------------------------------------------------------------------------------------
# conditions


def condition_sql(cond: Conditions, alias: str = "c") -> tuple[str, dict]:
    """The conditions as one SQL predicate over the batch context ``alias`` (columns segment,
    score, amount, tags, event) with its parameters."""
    parts, params = ["TRUE"], {}
    if cond.segments is not None:
        parts.append(f"coalesce({alias}.segment, 'Unknown') = ANY(%(segments)s)")
        params["segments"] = list(cond.segments)
    if cond.min_score is not None:
        parts.append(f"{alias}.score >= %(min_score)s")
        params["min_score"] = cond.min_score
    if cond.max_score is not None:
        parts.append(f"{alias}.score <= %(max_score)s")
        params["max_score"] = cond.max_score
    if cond.amount_above is not None:
        parts.append(f"{alias}.amount > %(amount_above)s")
        params["amount_above"] = cond.amount_above
    if cond.amount_below is not None:
        parts.append(f"{alias}.amount < %(amount_below)s")
        params["amount_below"] = cond.amount_below
    if cond.has_tags:
        parts.append(f"{alias}.tags @> %(has_tags)s::text[]")
        params["has_tags"] = list(cond.has_tags)
    if cond.without_tags:
        parts.append(f"NOT ({alias}.tags && %(without_tags)s::text[])")
        params["without_tags"] = list(cond.without_tags)
    if cond.events:
        parts.append(f"{alias}.event = ANY(%(events)s)")
        params["events"] = list(cond.events)
    return " AND ".join(parts), params


def condition_holds(cond: Conditions, ctx: dict) -> tuple[bool, list[str]]:
    """The same conditions in Python for one event (``explain``): whether they hold and, if not,
    which ones failed."""
    failed = []
    segment = ctx.get("segment") or "Unknown"
    score, amount, tags = ctx.get("score"), ctx.get("amount"), set(ctx.get("tags") or [])
    if cond.segments is not None and segment not in cond.segments:
        failed.append(f"segment {segment} not in {cond.segments}")
    if cond.min_score is not None and (score is None or score < cond.min_score):
        failed.append(f"score {score} < {cond.min_score}")
    if cond.max_score is not None and (score is None or score > cond.max_score):
        failed.append(f"score {score} > {cond.max_score}")
    if cond.amount_above is not None and (amount is None or amount <= cond.amount_above):
        failed.append(f"amount {amount} not above {cond.amount_above}")
    if cond.amount_below is not None and (amount is None or amount >= cond.amount_below):
        failed.append(f"amount {amount} not below {cond.amount_below}")
    if cond.has_tags and not set(cond.has_tags) <= tags:
        failed.append(f"tags {sorted(tags)} lack {cond.has_tags}")
    if cond.without_tags and tags & set(cond.without_tags):
        failed.append(f"tags {sorted(tags)} include {cond.without_tags}")
    if cond.events and ctx.get("event") not in cond.events:
        failed.append(f"event {ctx.get('event')} not in {cond.events}")
    return not failed, failed
