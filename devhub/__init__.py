"""devhub: a local GitHub stand-in (REST subset, git smart-HTTP, signed webhooks) for tests and demos."""

from devhub.deliveries import Delivery
from devhub.server import DevHub, Fault, GitRequest, Hold, Injection, OrphanReview, RecordedRequest

__all__ = ["Delivery", "DevHub", "Fault", "GitRequest", "Hold", "Injection", "OrphanReview",
           "RecordedRequest"]
