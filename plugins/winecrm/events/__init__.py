"""What customers do after a campaign: the public receiver (one-click unsubscribe today; Brevo
webhooks and behaviour events next), the event queue and the automation rules (issue 11)."""
