"""Figure: webhook ingress latency at a fixed rate and saturation throughput, vs a bare route.

One run starts an embedded Redis, the real app (`nightcrew serve`, one uvicorn worker) and a bare
FastAPI app under the same uvicorn settings whose `POST /webhooks` only answers 202, then sends
both the same signed `issues.labeled` deliveries (GitHub's example body, distinct
`X-GitHub-Delivery` and issue number each) from separate processes:

- latency at a fixed rate: a small open-loop asyncio sender (Debian has `wrk` but no `wrk2`, and
  `wrk` has no constant-rate mode) paces requests over many keep-alive connections and measures
  each one from its *scheduled* send time, so a server that falls behind is not hidden
  (no coordinated omission). Its own lag behind the schedule is printed too.
- saturation: `wrk -t2 -c64` with a Lua script cycling through pre-signed deliveries.

After each phase against the app it pumps the inbox into RQ intake jobs, as a worker does, and
counts them: every delivery sent must be exactly one job (deliveries unanswered when wrk stopped are redelivered first, as GitHub
would), and a sample of accepted deliveries is redelivered and must create no job.

Usage: .venv/bin/python bench/ingress.py [--rate 1000] [--fixed-seconds 8] [--sat-seconds 8]
Needs `wrk` (apt-get install wrk). Loopback only; stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-not-real"
SENTINEL = 987654321987  # the issue number's place in the body template
SEP = b"\x01"  # separates the template's parts in the parts file (never in JSON or headers)
INSTALLATION_ID = 4242

# The bare route, run as a script: argv = port, workers. Same uvicorn settings as `nightcrew serve`.
BARE_APP = """
import sys, uvicorn
from fastapi import FastAPI, Response
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
@app.get("/healthz")
def healthz():
    return {"ok": True}
@app.post("/webhooks")
async def webhooks():
    return Response(status_code=202)
if __name__ == "__main__":
    workers = int(sys.argv[2])
    uvicorn.run("bench_bare_app:app" if workers > 1 else app, host="127.0.0.1",
                port=int(sys.argv[1]), workers=workers, log_level="warning", access_log=False)
"""

# wrk's Lua: each thread reads the pre-signed rows (issue number, delivery id, signature) and
# takes every NCB_THREADS-th one, builds the exact bytes Python would, and tracks which
# deliveries are still unanswered (the app's 202/200 body names the task `owner/repo#N`).
WRK_LUA = r"""
local threads, next_tid = {}, 1

function setup(thread)
  thread:set("tid", next_tid)
  table.insert(threads, thread)
  next_tid = next_tid + 1
end

local function split(s, sep)
  local out, start = {}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then out[#out + 1] = string.sub(s, start); return out end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end

function init(args)
  local f = assert(io.open(os.getenv("NCB_PARTS"), "rb"))
  local parts = split(f:read("*a"), "\1")
  f:close()
  HA, HB, HC, BA, BB = parts[1], parts[2], parts[3], parts[4], parts[5]
  local nthreads = tonumber(os.getenv("NCB_THREADS"))
  rows, idx, issued, wrapped = {}, 0, 0, 0
  s202, s200, sother = 0, 0, 0
  pending = {}
  local i = 0
  for line in io.lines(os.getenv("NCB_ROWS")) do
    if i % nthreads == tid - 1 then
      local n, d, s = string.match(line, "^(%d+) (%S+) (%S+)$")
      rows[#rows + 1] = { n, d, s }
    end
    i = i + 1
  end
end

function request()
  idx = idx + 1
  if idx > #rows then idx = 1; wrapped = wrapped + 1 end
  local r = rows[idx]
  local body = BA .. r[1] .. BB
  pending[r[1]] = true
  issued = issued + 1
  return HA .. r[2] .. HB .. r[3] .. HC .. #body .. "\r\n\r\n" .. body
end

function response(status, headers, body)
  if status == 202 then s202 = s202 + 1
  elseif status == 200 then s200 = s200 + 1
  else sother = sother + 1 end
  local n = string.match(body, '#(%d+)"')
  if n then pending[n] = nil end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local keys = {}
    for k, _ in pairs(t:get("pending")) do keys[#keys + 1] = k end
    io.write(string.format("NCB thread %d %d %d %d %d %d %s\n", t:get("tid"), t:get("issued"),
      t:get("s202"), t:get("s200"), t:get("sother"), t:get("wrapped"), table.concat(keys, ",")))
  end
  local e = summary.errors
  io.write(string.format("NCB summary %d %d %d %d %d %d %d %d %d\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), e.connect, e.read,
    e.write, e.status, e.timeout))
end
"""


# ---------------------------------------------------------------- deliveries


@dataclass(frozen=True)
class Template:
    """The request's fixed bytes; a delivery fills in number, delivery id and signature."""

    head_a: bytes  # request line and headers up to the delivery id
    head_b: bytes  # up to the signature
    head_c: bytes  # up to the content length
    body_a: bytes  # JSON up to the issue number
    body_b: bytes  # JSON after it

    def body(self, number: int) -> bytes:
        return self.body_a + str(number).encode() + self.body_b

    def request(self, row: Row) -> bytes:
        body = self.body(row.number)
        return (self.head_a + row.delivery.encode() + self.head_b + row.signature.encode()
                + self.head_c + str(len(body)).encode() + b"\r\n\r\n" + body)

    def dump(self, path: Path) -> None:
        path.write_bytes(SEP.join([self.head_a, self.head_b, self.head_c, self.body_a, self.body_b]))

    @classmethod
    def load(cls, path: Path) -> Template:
        return cls(*path.read_bytes().split(SEP))


@dataclass(frozen=True)
class Row:
    number: int
    delivery: str
    signature: str


def make_template() -> Template:
    """GitHub's `issues.labeled` example: trigger label, human sender, an installation."""
    from devhub.webhook_schemas import webhook_example

    payload = webhook_example("issues", "labeled")
    payload["label"]["name"] = "nightcrew"
    payload["sender"]["type"] = "User"
    payload["installation"] = {"id": INSTALLATION_ID, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="}
    payload["issue"]["state"] = "open"
    payload["issue"]["number"] = SENTINEL
    body = json.dumps(payload, separators=(",", ":")).encode()
    body_a, body_b = body.split(str(SENTINEL).encode())  # exactly one occurrence
    head = ("POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            "Accept: */*\r\nContent-Type: application/json\r\nX-GitHub-Event: issues\r\n"
            "X-GitHub-Hook-ID: 1\r\nX-GitHub-Hook-Installation-Target-ID: 4242\r\n"
            "X-GitHub-Hook-Installation-Target-Type: integration\r\nX-GitHub-Delivery: ")
    return Template(head.encode(), b"\r\nX-Hub-Signature-256: ", b"\r\nContent-Length: ",
                    body_a, body_b)


def make_rows(template: Template, first_number: int, count: int) -> list[Row]:
    rows = []
    for number in range(first_number, first_number + count):
        digest = hmac.new(SECRET.encode(), template.body(number), hashlib.sha256).hexdigest()
        rows.append(Row(number, str(uuid.uuid4()), f"sha256={digest}"))
    return rows


def dump_rows(rows: list[Row], path: Path) -> None:
    path.write_text("".join(f"{r.number} {r.delivery} {r.signature}\n" for r in rows))


def load_rows(path: Path) -> list[Row]:
    out = []
    for line in path.read_text().splitlines():
        number, delivery, signature = line.split(" ")
        out.append(Row(int(number), delivery, signature))
    return out


# ---------------------------------------------------------------- fixed-rate sender


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return status, body


async def _fixed_rate(port: int, requests: list[bytes], rate: float, connections: int,
                      max_connections: int) -> dict[str, Any]:
    n = len(requests)
    latency = [float("nan")] * n
    lag = [0.0] * n
    status = [0] * n
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    opened = connections
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                  scheduled: float) -> None:
        reader, writer = conn
        try:
            writer.write(requests[i])
            code, _ = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            status[i] = -1
            writer.close()
            return
        latency[i] = time.perf_counter() - scheduled
        status[i] = code
        idle.put_nowait(conn)

    start = time.perf_counter() + 0.05
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            conn = idle.get_nowait()
        except asyncio.QueueEmpty:
            if opened < max_connections:
                opened += 1
                conn = await asyncio.open_connection("127.0.0.1", port)
            else:
                conn = await idle.get()
        lag[i] = time.perf_counter() - scheduled
        task = asyncio.create_task(one(i, conn, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    last_send = time.perf_counter()
    if tasks:
        await asyncio.wait(set(tasks), timeout=15)
    return {"latency": latency, "lag": lag, "status": status, "opened": opened,
            "send_rate": (n - 1) / (last_send - start) if n > 1 else 0.0}


def sender_main(port: int, rows_path: Path, parts_path: Path, rate: float, out: Path) -> None:
    """Entry point of the separate sender process; writes its measurements as JSON."""
    template = Template.load(parts_path)
    requests = [template.request(row) for row in load_rows(rows_path)]
    result = asyncio.run(_fixed_rate(port, requests, rate, connections=32, max_connections=512))
    out.write_text(json.dumps(result))


# ---------------------------------------------------------------- the bench run


@dataclass
class Servers:
    tmp: Path
    template: Template
    parts: Path
    app_port: int
    bare_port: int
    connection: Any  # redis.Redis
    notes: list[str] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    clean = sorted(v for v in values if v == v)
    if not clean:
        return float("nan")
    return clean[min(len(clean) - 1, int(round(q / 100 * (len(clean) - 1))))]


def run_fixed_rate(s: Servers, port: int, rows: list[Row], rate: float, tag: str) -> dict[str, Any]:
    rows_path, out = s.tmp / f"fixed-{tag}.rows", s.tmp / f"fixed-{tag}.json"
    dump_rows(rows, rows_path)
    timeout = len(rows) / rate + 30
    subprocess.run([sys.executable, __file__, "--sender", str(port), str(rows_path), str(s.parts),
                    str(rate), str(out)], check=True, timeout=timeout, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run_wrk(s: Servers, port: int, rows_path: Path, threads: int, connections: int,
            seconds: float) -> dict[str, Any]:
    env = {**os.environ, "NCB_PARTS": str(s.parts), "NCB_ROWS": str(rows_path),
           "NCB_THREADS": str(threads)}
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s",
            "-s", str(s.tmp / "ingress_wrk.lua"), f"http://127.0.0.1:{port}/webhooks"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    result: dict[str, Any] = {"threads": {}}
    for line in proc.stdout.splitlines():
        parts = line.split(" ")
        if line.startswith("NCB thread "):
            tid, issued, s202, s200, sother, wrapped = map(int, parts[2:8])
            pending = [int(x) for x in parts[8].split(",") if x] if len(parts) > 8 else []
            result["threads"][tid] = {"issued": issued, "s202": s202, "s200": s200,
                                      "sother": sother, "wrapped": wrapped, "pending": pending}
        elif line.startswith("NCB summary "):
            (requests, duration_us, p50, p99, e_conn, e_read, e_write, e_status,
             e_timeout) = map(int, parts[2:11])
            result.update(requests=requests, rps=requests / (duration_us / 1e6),
                          p50_ms=p50 / 1000, p99_ms=p99 / 1000,
                          errors={"connect": e_conn, "read": e_read, "write": e_write,
                                  "status": e_status, "timeout": e_timeout})
    if "rps" not in result:
        raise RuntimeError(f"no summary from wrk:\n{proc.stdout}\n{proc.stderr}")
    return result


def send_sequential(s: Servers, port: int, rows: list[Row]) -> list[tuple[int, dict[str, Any]]]:
    """Deliver ``rows`` one after another on one keep-alive connection (GitHub's redelivery)."""
    out: list[tuple[int, dict[str, Any]]] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for row in rows:
            body = s.template.body(row.number)
            conn.request("POST", "/webhooks", body=body, headers={
                "Content-Type": "application/json", "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": row.delivery, "X-Hub-Signature-256": row.signature,
                "User-Agent": "GitHub-Hookshot/bench"})
            response = conn.getresponse()
            raw = response.read()
            out.append((response.status, json.loads(raw) if raw else {}))
    finally:
        conn.close()
    return out


def wait_queue_settled(s: Servers) -> None:
    """Wait until the app has finished the requests still in flight when the sender stopped."""
    from github_app.ingress.inbox import INBOX_KEY

    key = INBOX_KEY
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now_len = int(s.connection.llen(key))
        if now_len != last:
            last, stable_since = now_len, time.monotonic()
        elif time.monotonic() - stable_since > 0.4:
            return
        time.sleep(0.05)


def intake_deliveries(s: Servers) -> tuple[list[str], int]:
    """Delivery ids of the intake jobs, and how many jobs do not match their delivery's issue.

    First the inbox is pumped into intake jobs as a worker would (after the load, so the pump's
    work is not counted against the web process's throughput).
    """
    from rq import Queue
    from rq.job import Job

    from github_app.ingress.inbox import DELIVERY_TTL_S, Pump
    from github_app.queue.jobqueue import INTAKE_JOB, INTAKE_QUEUE, RQJobQueue
    from github_app.queue.payloads import IntakeJob

    Pump(s.connection, RQJobQueue(s.connection), owner="bench", keep_s=DELIVERY_TTL_S).drain()
    ids = Queue(INTAKE_QUEUE, connection=s.connection).get_job_ids()
    deliveries, mismatched = [], 0
    for start in range(0, len(ids), 2000):
        for job in Job.fetch_many(ids[start:start + 2000], connection=s.connection):
            if job is None:
                mismatched += 1
                continue
            [raw] = job.args
            deliveries.append(IntakeJob.from_json(raw).delivery)
            if job.func_name != INTAKE_JOB:
                mismatched += 1
    return deliveries, mismatched


@dataclass
class Exactness:
    expected: int
    jobs: int
    lost: int
    duplicated: int
    foreign: int
    mismatched: int
    redelivered_late: int
    redelivery_sample: int
    redelivery_not_duplicate: int
    redelivery_new_jobs: int


def check_exactly_once(s: Servers, issued: list[Row], retry: list[Row], sample: int) -> Exactness:
    """Redeliver ``retry`` (unanswered or failed), then compare jobs with deliveries."""
    wait_queue_settled(s)
    for status, _ in send_sequential(s, s.app_port, retry):
        if status not in (200, 202):
            s.notes.append(f"redelivery of an unanswered delivery got {status}")
    deliveries, mismatched = intake_deliveries(s)
    expected = {r.delivery for r in issued}
    got = set(deliveries)
    picked = random.Random(7).sample(issued, min(sample, len(issued)))
    answers = send_sequential(s, s.app_port, picked)
    not_dup = sum(1 for status, body in answers if status != 200 or not body.get("duplicate"))
    after, _ = intake_deliveries(s)
    return Exactness(
        expected=len(expected), jobs=len(deliveries), lost=len(expected - got),
        duplicated=len(deliveries) - len(got), foreign=len(got - expected), mismatched=mismatched,
        redelivered_late=len(retry), redelivery_sample=len(picked),
        redelivery_not_duplicate=not_dup, redelivery_new_jobs=len(after) - len(deliveries),
    )


def warm_up(s: Servers, port: int, rows_path: Path) -> None:
    run_wrk(s, port, rows_path, threads=1, connections=16, seconds=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed rate, req/s")
    parser.add_argument("--fixed-seconds", type=float, default=8.0)
    parser.add_argument("--sat-seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--redeliver", type=int, default=200,
                        help="accepted deliveries redelivered per phase (must make no job)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn workers for both servers (passed to `nightcrew serve --workers`)")
    parser.add_argument("--sender", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        port, rows, parts, rate, out = args.sender
        sender_main(int(port), Path(rows), Path(parts), float(rate), Path(out))
        return 0
    if shutil.which("wrk") is None:
        print("bench/ingress.py needs `wrk` for the saturation figure: apt-get install wrk",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="nightcrew-ingress-") as tmp:
        return run(Path(tmp), args)


def run(tmp: Path, args: argparse.Namespace) -> int:
    import redis

    from github_app.redis_conn import EmbeddedRedis
    from runner.worker.procs import ManagedProcess, free_port, nightcrew_command, wait_http_ok

    started = time.monotonic()
    embedded = EmbeddedRedis(tmp / "redis")
    processes: list[ManagedProcess] = []
    try:
        url = embedded.ensure_started()
        connection = redis.Redis.from_url(url)
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env = {**keep, "NIGHTCREW_WEBHOOK_SECRET": SECRET, "REDIS_URL": url,
               "NIGHTCREW_DATA_DIR": str(tmp / "data")}
        app_port, bare_port = free_port(), free_port()
        serve = ["serve", "--port", str(app_port)]
        if args.workers > 1:  # for when `nightcrew serve` grows --workers
            serve += ["--workers", str(args.workers)]
        app = ManagedProcess("app", nightcrew_command(*serve), env, tmp / "app.log")
        processes.append(app)
        (tmp / "bench_bare_app.py").write_text(BARE_APP)
        bare = ManagedProcess("bare", [sys.executable, str(tmp / "bench_bare_app.py"), str(bare_port),
                                       str(args.workers)], {**env, "PYTHONPATH": str(tmp)},
                              tmp / "bare.log")
        processes.append(bare)
        template = make_template()
        parts = tmp / "template.parts"
        template.dump(parts)
        (tmp / "ingress_wrk.lua").write_text(WRK_LUA)
        s = Servers(tmp, template, parts, app_port, bare_port, connection)
        wait_http_ok(f"http://127.0.0.1:{app_port}/healthz", app)
        wait_http_ok(f"http://127.0.0.1:{bare_port}/healthz", bare)

        fixed_n = int(args.rate * args.fixed_seconds)
        sat_n = int(8000 * args.sat_seconds)  # more than the bare route can take: no wrap-around
        warm_rows, fixed_rows, sat_rows = (make_rows(template, 1_000_000, 20_000),
                                           make_rows(template, 2_000_000, fixed_n),
                                           make_rows(template, 3_000_000, sat_n))
        warm_path, sat_path = tmp / "warm.rows", tmp / "sat.rows"
        dump_rows(warm_rows, warm_path)
        dump_rows(sat_rows, sat_path)

        for port in (bare_port, app_port):
            warm_up(s, port, warm_path)
        connection.flushall()

        # 1. latency at a fixed rate
        fixed = {"bare": run_fixed_rate(s, bare_port, fixed_rows, args.rate, "bare")}
        connection.flushall()
        fixed["app"] = run_fixed_rate(s, app_port, fixed_rows, args.rate, "app")
        retry = [r for r, st in zip(fixed_rows, fixed["app"]["status"], strict=True) if st not in (200, 202)]
        exact_fixed = check_exactly_once(s, fixed_rows, retry, args.redeliver)
        connection.flushall()

        # 2. saturation
        sat = {"bare": run_wrk(s, bare_port, sat_path, args.threads, args.connections,
                               args.sat_seconds)}
        sat["app"] = run_wrk(s, app_port, sat_path, args.threads, args.connections,
                             args.sat_seconds)
        issued: list[Row] = []
        retry_numbers: set[int] = set()
        wrapped = 0
        for tid, t in sat["app"]["threads"].items():
            issued += sat_rows[tid - 1::args.threads][:t["issued"]]
            retry_numbers.update(t["pending"])
            wrapped += t["wrapped"]
        if wrapped:
            s.notes.append(f"wrk wrapped around its {sat_n} deliveries: raise the row count")
        retry = [r for r in issued if r.number in retry_numbers]
        exact_sat = check_exactly_once(s, issued, retry, args.redeliver)
        connection.flushall()

        report(args, s, fixed, sat, exact_fixed, exact_sat, time.monotonic() - started)
        ok = _goals(args, fixed, sat, exact_fixed, exact_sat)
        return 0 if all(met for _, met, _ in ok) else 1
    finally:
        for proc in reversed(processes):
            proc.stop()
        embedded.stop()


def _fixed_summary(r: dict[str, Any]) -> dict[str, float]:
    ok = [lat for lat, st in zip(r["latency"], r["status"], strict=True) if st in (200, 202)]
    return {"p50": pct(ok, 50) * 1000, "p99": pct(ok, 99) * 1000, "max": max(ok, default=float("nan")) * 1000,
            "lag99": pct(r["lag"], 99) * 1000, "rate": r["send_rate"],
            "statuses": dict(Counter(r["status"])), "opened": r["opened"]}


def _goals(args: argparse.Namespace, fixed: dict[str, Any], sat: dict[str, Any],
           ef: Exactness, es: Exactness) -> list[tuple[str, bool, str]]:
    p99 = _fixed_summary(fixed["app"])["p99"]
    ratio = sat["app"]["rps"] / sat["bare"]["rps"]
    lost = ef.lost + es.lost
    dup = ef.duplicated + es.duplicated + ef.redelivery_new_jobs + es.redelivery_new_jobs
    return [
        (f"p99 < 20 ms at {args.rate:g} req/s", p99 < 20, f"{p99:.1f} ms"),
        ("throughput >= 0.5 x bare route", ratio >= 0.5, f"{ratio:.2f}"),
        ("0 lost", lost == 0, str(lost)),
        ("0 duplicated", dup == 0, str(dup)),
    ]


def report(args: argparse.Namespace, s: Servers, fixed: dict[str, Any], sat: dict[str, Any],
           ef: Exactness, es: Exactness, elapsed: float) -> None:
    body_len = len(s.template.body(2_000_000))
    print(f"ingress bench · {os.cpu_count()} CPUs · `nightcrew serve` ({args.workers} uvicorn "
          f"worker{'s' if args.workers > 1 else ''}) vs bare "
          f"FastAPI 202 route, same uvicorn settings · signed issues.labeled, {body_len} B body")
    print(f"fixed rate {args.rate:g} req/s for {args.fixed_seconds:g} s "
          f"({int(args.rate * args.fixed_seconds)} deliveries each; open-loop asyncio sender in "
          f"its own process, latency from scheduled send time; no wrk2 in Debian):")
    for name in ("bare", "app"):
        f = _fixed_summary(fixed[name])
        print(f"  {name:4s} p50 {f['p50']:6.2f} ms  p99 {f['p99']:6.2f} ms  max {f['max']:7.2f} ms"
              f"  | sender {f['rate']:.0f} req/s, lag p99 {f['lag99']:.2f} ms, "
              f"{f['opened']} conns, statuses {f['statuses']}")
    print(f"saturation wrk -t{args.threads} -c{args.connections} -d{args.sat_seconds:g}s "
          f"(Lua cycles pre-signed distinct deliveries):")
    for name in ("bare", "app"):
        w = sat[name]
        errs = {k: v for k, v in w["errors"].items() if v}
        answers: Counter[int | str] = Counter()
        for t in w["threads"].values():
            answers.update({202: t["s202"], 200: t["s200"], "other": t["sother"]})
        print(f"  {name:4s} {w['rps']:7.0f} req/s  p50 {w['p50_ms']:6.2f} ms  p99 "
              f"{w['p99_ms']:6.2f} ms  answers {dict(+answers)}  errors {errs or 'none'}")
    print(f"  ratio app/bare {sat['app']['rps'] / sat['bare']['rps']:.2f}")
    for label, e in (("fixed-rate", ef), ("saturation", es)):
        print(f"exactly-once ({label}): {e.expected} deliveries -> {e.jobs} intake jobs · "
              f"lost {e.lost} · duplicated {e.duplicated} · foreign {e.foreign} · "
              f"bad jobs {e.mismatched} · {e.redelivered_late} unanswered redelivered · "
              f"{e.redelivery_sample} accepted redelivered -> {e.redelivery_new_jobs} new jobs, "
              f"{e.redelivery_not_duplicate} not answered as duplicate")
    for note in s.notes:
        print(f"note: {note}")
    print("goals:")
    for label, met, value in _goals(args, fixed, sat, ef, es):
        print(f"  {label:34s} {'MET' if met else 'NOT MET':8s} ({value})")
    print(f"(bench took {elapsed:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
