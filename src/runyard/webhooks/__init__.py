"""Outbound webhooks (DESIGN §11): subscriptions, an outbox of deliveries, a delivery loop."""
