"""Webhooks: tell API clients what happened to their cases.

The case lifecycle writes each event to the outbox (`reviewplatform.models.CaseEvent`) in the
transaction of the change. This app fans events out to the endpoints the case's client
registered, one `WebhookDelivery` per endpoint, and sends them the Standard Webhooks way, signed,
retried with backoff until they succeed or their retry window ends. See docs/api.md.
"""
