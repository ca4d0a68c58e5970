"""devhub: a local GitHub stand-in (REST subset, git smart-HTTP, signed webhooks) for tests and demos."""

from github_app.devhub.deliveries import Delivery
from github_app.devhub.server import DevHub, Fault, Hold, Injection, RecordedRequest

__all__ = ["Delivery", "DevHub", "Fault", "Hold", "Injection", "RecordedRequest"]
