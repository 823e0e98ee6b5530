"""Provider webhooks in: verify, normalise into one event type, store once, act."""
