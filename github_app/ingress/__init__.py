"""Ingress: the webhook endpoint, signatures, event parsing, routing and the Redis inbox."""
