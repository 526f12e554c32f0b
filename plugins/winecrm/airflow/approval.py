"""The marketing person's approval of a live campaign, in the Airflow UI (human in the loop).

An ApprovalOperator whose request says what would leave (e-mails per scenario, the control
group, who is left out and why) and whose answer is recorded in ``crm.campaigns`` — approved or
rejected, by whom — before downstream tasks run or are skipped. No answer within the response
timeout counts as a rejection: nothing is sent. Only live runs reach it (dry runs branch past).
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.hitl import ApprovalOperator


class CampaignApprovalOperator(ApprovalOperator):
    def __init__(self, **kwargs) -> None:
        super().__init__(subject="Campagne de la semaine", defaults="Reject",
                         response_timeout=kwargs.pop("response_timeout", dt.timedelta(days=2)),
                         execution_timeout=None, **kwargs)

    def execute(self, context):
        from winecrm.airflow.tasks import campaign_review

        self.subject, self.body = campaign_review(context["run_id"])
        return super().execute(context)

    def execute_complete(self, context, event):
        from winecrm.airflow.tasks import record_decision

        if "error" not in event:
            record_decision(context["run_id"], event["chosen_options"] == [self.APPROVE], event.get("responded_by_user"))
        return super().execute_complete(context, event)
