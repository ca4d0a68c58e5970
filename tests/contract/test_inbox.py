"""The webhook inbox against a real Redis: batched accepts, dedupe, the pump, recovery."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue

from devhub.webhook_schemas import webhook_example
from github_app.ingress.app import create_app
from github_app.ingress.inbox import (
    INBOX_KEY,
    PUMPING_PREFIX,
    REJECTED_KEY,
    BatchingInbox,
    Entry,
    Inbox,
    Pump,
    recover,
)
from github_app.ingress.signatures import sign
from github_app.queue.jobqueue import INTAKE_JOB, INTAKE_QUEUE, RQJobQueue
from github_app.redis_conn import EmbeddedRedis
from github_app.settings import Settings
from tests.contract.inbox_helpers import pumped, redis_url

KEEP_S = 600


def entry(n: int) -> Entry:
    return Entry(f"delivery-{n}", INTAKE_JOB, {"task": f"o/r#{n}", "delivery": str(n)})


def evalsha_calls(connection: redis.Redis) -> int:
    stats = connection.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(
        stats.get("cmdstat_eval", {}).get("calls", 0))


def inbox_ids(connection: redis.Redis) -> list[str]:
    return [json.loads(raw)["id"] for raw in connection.lrange(INBOX_KEY, 0, -1)]


def test_concurrent_accepts_share_round_trips_and_each_gets_its_own_answer(
    connection: redis.Redis,
) -> None:
    # 300 deliveries at once, 60 of them a second copy of one already in the crowd.
    entries = [entry(n) for n in range(240)] + [entry(n) for n in range(0, 240, 4)]
    inbox = BatchingInbox(redis_url(connection), keep_s=KEEP_S)

    async def run() -> list[bool]:
        try:
            return await asyncio.gather(*(inbox.accept(e) for e in entries))
        finally:
            await inbox.aclose()

    before = evalsha_calls(connection)
    answers = asyncio.run(run())
    calls = evalsha_calls(connection) - before
    assert answers == [True] * 240 + [False] * 60
    assert sorted(inbox_ids(connection)) == sorted(f"delivery-{n}" for n in range(240))
    assert 1 <= calls < 20, calls  # grouped, not one call per delivery


def test_a_delivery_seen_in_an_earlier_batch_is_refused(connection: redis.Redis) -> None:
    sync = Inbox(connection, keep_s=KEEP_S)
    assert sync.accept(entry(1)) is True
    inbox = BatchingInbox(redis_url(connection), keep_s=KEEP_S)

    async def run() -> tuple[bool, bool]:
        try:
            return await inbox.accept(entry(1)), await inbox.accept(entry(2))
        finally:
            await inbox.aclose()

    assert asyncio.run(run()) == (False, True)
    assert 0 < connection.ttl("nc:seen:delivery-1") <= KEEP_S
    assert inbox_ids(connection) == ["delivery-1", "delivery-2"]


def test_redis_gone_fails_every_waiter_and_ingress_answers_503(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.ensure_started()
    settings = Settings(webhook_secrets=["s"], data_dir=tmp_path)
    app = create_app(settings, redis_url=url)  # Redis is there at start-up …
    server.stop()  # … and then it is gone.

    inbox = BatchingInbox(url, keep_s=KEEP_S)

    async def accept_five() -> list[Any]:
        return await asyncio.gather(*(inbox.accept(entry(n)) for n in range(5)),
                                    return_exceptions=True)

    assert all(isinstance(r, redis.ConnectionError) for r in asyncio.run(accept_five()))

    payload = webhook_example("issues", "labeled")
    payload["label"]["name"], payload["sender"]["type"] = "nightcrew", "User"
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": sign("s", body)}

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.post("/webhooks", content=body, headers=headers)

    response = asyncio.run(post())
    assert response.status_code == 503 and "redeliver" in response.json()["message"]
    # Redis back: the same delivery is accepted (the failed attempt left no trace).
    server.ensure_started()
    try:
        assert asyncio.run(post()).status_code == 202
    finally:
        server.stop()


def test_the_pump_makes_one_intake_job_per_entry_in_order(connection: redis.Redis) -> None:
    inbox = Inbox(connection, keep_s=KEEP_S)
    for n in range(5):
        inbox.accept(entry(n))
    jobs = pumped(connection)
    assert [job.id for job in jobs] == [f"delivery-{n}" for n in range(5)]
    assert all(job.func_name == INTAKE_JOB for job in jobs)
    assert jobs[3].args == ({"task": "o/r#3", "delivery": "3"},)
    assert connection.llen(INBOX_KEY) == 0
    assert not list(connection.scan_iter(match=PUMPING_PREFIX + "*"))


def test_an_entry_left_by_a_killed_pump_is_recovered_once(connection: redis.Redis) -> None:
    inbox = Inbox(connection, keep_s=KEEP_S)
    inbox.accept(entry(1))
    inbox.accept(entry(2))
    # A pump took entry 1 and died: after the job was made, or before. Both must end as one job.
    connection.lmove(INBOX_KEY, PUMPING_PREFIX + "dead-worker", "LEFT", "RIGHT")
    RQJobQueue(connection).enqueue_once(INTAKE_JOB, entry(1).args, queue=INTAKE_QUEUE,
                                        job_id="delivery-1", keep_s=KEEP_S)
    connection.lmove(INBOX_KEY, PUMPING_PREFIX + "live-worker", "LEFT", "RIGHT")

    assert recover(connection, live_owners=["live-worker"]) == 1
    assert connection.llen(PUMPING_PREFIX + "live-worker") == 1  # a live pump's entry is its own
    assert not connection.exists(PUMPING_PREFIX + "dead-worker")
    # The live worker restarts under the same name and resumes its half-done entry.
    Pump(connection, RQJobQueue(connection), owner="live-worker", keep_s=KEEP_S).drain()
    ids = Queue(INTAKE_QUEUE, connection=connection).get_job_ids()
    assert sorted(ids) == ["delivery-1", "delivery-2"]


def test_an_entry_that_is_not_an_intake_job_is_kept_aside_not_run(connection: redis.Redis) -> None:
    hostile = [b"not json", json.dumps({"id": "x", "func": "os.system", "args": {}}).encode(),
               json.dumps(["a list"]).encode()]
    for raw in hostile:
        connection.rpush(INBOX_KEY, raw)
    Inbox(connection, keep_s=KEEP_S).accept(entry(7))
    assert [job.id for job in pumped(connection)] == ["delivery-7"]
    assert connection.lrange(REJECTED_KEY, 0, -1) == hostile


def test_blocking_pump_waits_for_the_next_entry(connection: redis.Redis) -> None:
    pump = Pump(connection, RQJobQueue(connection), owner="w", keep_s=KEEP_S)
    assert pump.pump_one(block_s=0.1) is False
    Inbox(connection, keep_s=KEEP_S).accept(entry(3))
    assert pump.pump_one(block_s=1.0) is True
    assert Queue(INTAKE_QUEUE, connection=connection).get_job_ids() == ["delivery-3"]


def test_an_idle_running_pump_settles_an_entry_a_failure_left_in_its_own_list(
    connection: redis.Redis,
) -> None:
    pump = Pump(connection, RQJobQueue(connection), owner="busy-worker", keep_s=KEEP_S)
    Inbox(connection, keep_s=KEEP_S).accept(entry(4))
    # Taken, then the enqueue failed (a Redis blip): the entry stays in the live pump's list.
    connection.lmove(INBOX_KEY, PUMPING_PREFIX + "busy-worker", "LEFT", "RIGHT")
    assert recover(connection, live_owners=["busy-worker"]) == 0  # alive: not recovered
    assert pump.pump_one(block_s=0.1) is True  # the inbox is empty: its own entry goes first
    assert Queue(INTAKE_QUEUE, connection=connection).get_job_ids() == ["delivery-4"]
    assert connection.llen(PUMPING_PREFIX + "busy-worker") == 0
    assert pump.pump_one(block_s=0.1) is False
