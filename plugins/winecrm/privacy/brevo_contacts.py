"""The person's contact in Brevo, deleted after the warehouse's commit (it cannot be rolled
back)."""

from __future__ import annotations

from winecrm.privacy.report import ErasureReport

def brevo_client_from_env():
    """A Brevo client from BREVO_API_KEY / BREVO_API_URL with campaigns.yaml's sending limits, or None."""
    from winecrm.campaigns import brevo

    return brevo.configured_client(brevo.credentials_from_env())


def delete_brevo_contacts(report: ErasureReport, client) -> ErasureReport:
    """Delete the person's Brevo contact(s), after the warehouse commit; ``client`` None means no
    Brevo connection. A Brevo error is recorded in ``report.brevo_error``; a contact Brevo does not
    let the API delete (405) is ``not_allowed``, for a person to delete in Brevo (the caller
    exits 2 for either: ``needs_a_person``)."""
    from winecrm.campaigns import brevo

    for address in report.person.addresses:
        if client is None:
            report.brevo[address] = "no_connection"
        elif report.brevo_error:
            report.brevo[address] = "error"  # not tried after the first failure
        else:
            try:
                report.brevo[address] = "deleted" if client.delete_contact(address) else "not_found"
            except brevo.BrevoNotAllowed:
                report.brevo[address] = "not_allowed"  # a person must delete it in Brevo; the others go on
            except brevo.BrevoError as exc:
                report.brevo[address] = "error"
                report.brevo_error = str(exc)
    return report


# --------------------------------------------------------------------------------------------
# the guard for the next ERP export
