"""What customers do after an e-mail: the public receiver (Brevo webhooks, behaviour events,
one-click unsubscribe), the event queue, the automation rules and their actions (crm_events)."""
