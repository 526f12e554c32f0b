"""E-mail campaigns: templates, the send ledger, the Brevo client, dry-run outbox (issue 10)."""
