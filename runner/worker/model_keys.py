"""The maintenance pass's side of refused model API keys: probe them, and let work go on.

While the fleet holds task work (``github_app.queue.model_hold``), one worker at a time (every
``PROBE_EVERY_S``) asks the API to count the tokens of a one-word request — free, and refused
exactly when the key is — with each refused key. A key that is accepted again is cleared; once
any configured key works, the hold is lifted, every parked task is labeled queued and submitted
again (it resumes from its checkpoint), and dispatch goes on. Nobody has to type anything.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from github_app import logs
from github_app import wiring as app_wiring
from github_app.queue import model_hold
from github_app.queue.dispatch import advance
from github_app.queue.jobqueue import JobQueue
from github_app.queue.payloads import PayloadError, TaskJob
from github_app.queue.scheduler import TaskScheduler
from github_app.settings import Settings
from github_app.tracker.issue import IssueTracker
from runner.model import ModelError, ModelKeyRefused
from runner.model.anthropic import AnthropicModel
from runner.model.keys import KeyRing, configured_keys, fingerprint

log = logs.get("nightcrew.model_keys")
KeyWorks = Callable[[str], bool]


def key_works(model: str) -> KeyWorks:
    """A probe of one key: True unless the API refuses it (401/403)."""

    def works(key: str) -> bool:
        try:
            AnthropicModel(model, keys=KeyRing([key]), max_retries=0, timeout=20.0).count_tokens(
                system="nightcrew key probe", messages=[{"role": "user", "content": "ping"}], tools=[])
        except ModelKeyRefused:
            return False
        except ModelError:
            return True  # answered past the key check (overloaded, say): the key itself is fine
        return True

    return works


def probe(settings: Settings, connection: redis.Redis, scheduler: TaskScheduler, queue: JobQueue,
          *, works: KeyWorks | None = None, hosts: app_wiring.HostFor | None = None) -> list[str]:
    """Probe refused keys if it is time; lift the hold once a key works. The tasks resumed."""
    refused = model_hold.refusals(connection)
    if not refused and model_hold.held(connection) is None:
        return []
    if not model_hold.probe_due(connection, settings.model_probe_interval_s):
        return []
    keys = configured_keys(settings.anthropic_api_key)
    by_fingerprint = {fingerprint(key): key for key in keys}
    check = works or key_works(settings.executor_model)
    store = model_hold.RedisRefusals(connection)
    for refusal in refused:
        key = by_fingerprint.get(refusal.fingerprint)
        if key is None or check(key):  # accepted again, or no longer configured at all
            store.clear(refusal.fingerprint)
            log.info("model.key_accepted", key=refusal.fingerprint)
    if not KeyRing(keys, store).usable():
        return []
    return _release(connection, scheduler, queue, hosts or app_wiring.hosts(settings))


def _release(connection: redis.Redis, scheduler: TaskScheduler, queue: JobQueue,
             hosts: app_wiring.HostFor) -> list[str]:
    """Lift the hold and submit every parked task again (labeled queued); then dispatch."""
    resumed = []
    for task, raw in model_hold.release(connection).items():
        try:
            payload = TaskJob.from_json(raw)
        except PayloadError as exc:
            log.warning("model.parked_unreadable", task=task, error=str(exc))
            continue
        try:
            IssueTracker(hosts(payload.task, payload.installation_id), payload.task,
                         None).set_state("queued")
        except Exception as exc:  # GitHub down: the label catches up when the run starts
            log.warning("model.parked_label_failed", task=task, error=f"{type(exc).__name__}: {exc}"[:300])
        scheduler.submit(payload)
        resumed.append(task)
    log.warning("model.hold_lifted", resumed=resumed)
    advance(scheduler, queue)
    return resumed
