"""The marketing person's approval of a live campaign, in the Airflow UI (human in the loop).

An ApprovalOperator whose request says what would leave (e-mails per scenario, the control
group, who is left out and why) and whose answer is recorded in ``crm.campaigns`` — approved or
rejected, by whom — before downstream tasks run or are skipped. No answer within the response
timeout counts as a rejection: nothing is sent. Only live runs reach it (dry runs branch past).

When the request is written, the marketing person is told by e-mail (``ApprovalRequestEmail``,
the SMTP provider's notifier, connection ``smtp_default``): the same counts and subject lines,
the links to a rendered e-mail of each scenario, and the link to the request in the Airflow UI.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.providers.standard.operators.hitl import ApprovalOperator

from winecrm.airflow import SMTP_CONN_ID

log = logging.getLogger(__name__)


def approval_address() -> str:
    """Who approves: ``CRM_APPROVAL_EMAIL``, else ``approval.notify_email`` of campaigns.yaml."""
    from winecrm.core import settings

    try:
        configured = settings.campaigns_config().approval.notify_email
    except settings.ConfigError:  # the request still waits in the UI; render_emails said why already
        configured = ""
    return os.environ.get("CRM_APPROVAL_EMAIL", configured)


def approval_html(body_markdown: str, request_link: str | None) -> str:
    """The request's Markdown (a table, lists, links) as the e-mail's HTML, raw HTML disabled,
    with the button to the request in the Airflow UI."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(body_markdown)
    link = (f'<p><a href="{html.escape(request_link)}">Valider ou refuser la campagne dans Airflow</a></p>'
            if request_link else "<p>Valider ou refuser : Airflow, Parcourir › Actions requises.</p>")
    return f"<html><body>{body}{link}</body></html>"


class ApprovalRequestEmail(SmtpNotifier):
    """Tells the marketing person that a live campaign waits for them (never raises: the request
    waits in the UI whatever happens to the e-mail)."""

    def __init__(self):
        super().__init__(to="", subject="", html_content="", smtp_conn_id=SMTP_CONN_ID)

    def render_template_fields(self, context, jinja_env=None) -> None:
        return None  # built from the request itself, nothing to template

    def __call__(self, context):
        address = approval_address()
        if not address:
            log.info("No approval.notify_email (campaigns.yaml) nor CRM_APPROVAL_EMAIL: the request waits in "
                     "the Airflow UI (Browse > Required actions) without an e-mail")
            return
        task = context["task"]
        try:
            link = task.generate_link_to_ui_from_context(context=context)
        except (ValueError, KeyError):  # no api.base_url: the e-mail says where to look instead
            link = None
        self.to = address
        self.subject = f"[winecrm] {task.subject} : à valider"
        self.html_content = approval_html(task.body or "", link)
        try:
            super().__call__(context)
            log.info("Approval request e-mailed to %s", address)
        except Exception:
            log.exception("The approval request could not be e-mailed; it waits in the Airflow UI")


class CampaignApprovalOperator(ApprovalOperator):
    def __init__(self, **kwargs) -> None:
        super().__init__(subject="Campagne de la semaine", defaults="Reject",
                         response_timeout=kwargs.pop("response_timeout", dt.timedelta(days=2)),
                         execution_timeout=None, notifiers=kwargs.pop("notifiers", [ApprovalRequestEmail()]),
                         **kwargs)

    def execute(self, context):
        from winecrm.airflow.tasks import campaign_review

        self.subject, self.body = campaign_review(context["run_id"])
        return super().execute(context)

    def execute_complete(self, context, event):
        from winecrm.airflow.tasks import record_decision

        if "error" not in event:
            record_decision(context["run_id"], event["chosen_options"] == [self.APPROVE], event.get("responded_by_user"))
        return super().execute_complete(context, event)
