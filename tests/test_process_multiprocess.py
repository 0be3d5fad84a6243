"""The SQLite process registry across real OS processes.

Workers run under the "spawn" start method (each a fresh interpreter with its own connection),
every wait is bounded, and a worker that hangs is killed and fails the test.

* Lease contention: two processes claim and release the same process lease many times. Each
  records (fencing token, owner, the monotonic-clock window it held the lease in); the windows
  must never overlap and fencing tokens must rise strictly in time order.
* Cross-process wake: a waiter in one process sees an append made in another within 100 ms
  (median of several tries; it relies on the 5-40 ms poll, since notifications stay in-process).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import random
import statistics
import sys
import time
import traceback

import pytest

from lashstore.backends.sqlite.processes import SqliteProcessRegistry
from lashstore.errors import LeaseConflict
from lashstore.model.process import ProcessEventAppendRequest, ProcessEventType, ProcessRegistration

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process semantics")

CTX = mp.get_context("spawn")
WORKER_TIMEOUT_S = 60.0
PID = "proc-contended"
HOLDS_PER_WORKER = 40


def _report(results, tag, fn, *args) -> None:
    try:
        results.put(("ok", tag, fn(*args)))
    except BaseException:  # noqa: BLE001 - the parent must see every failure
        results.put(("error", tag, traceback.format_exc()))


def _collect(results, procs, expected: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    out: dict = {}
    errors: list[str] = []
    try:
        while len(out) + len(errors) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                status, tag, value = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
                continue
            (out.__setitem__(tag, value) if status == "ok" else errors.append(f"worker {tag}:\n{value}"))
    finally:
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    assert not errors, "\n".join(errors)
    assert len(out) == expected, f"{len(out)} of {expected} workers reported; exit codes {[p.exitcode for p in procs]}"
    return out


# -- lease contention ------------------------------------------------------------------------------


def _lease_holds(path: str, owner: str, holds: int, barrier) -> list[tuple[int, str, int, int]]:
    reg = SqliteProcessRegistry(path)
    rng = random.Random(owner)
    out: list[tuple[int, str, int, int]] = []
    conflicts = 0
    try:
        barrier.wait(timeout=WORKER_TIMEOUT_S)
        deadline = time.monotonic() + WORKER_TIMEOUT_S - 10
        while len(out) < holds:
            assert time.monotonic() < deadline, f"{owner} got only {len(out)} holds ({conflicts} conflicts)"
            try:
                # A TTL far beyond the test: only an explicit release ends a lease here.
                lease = reg.claim_process_lease(PID, owner, 120_000)
            except LeaseConflict:
                conflicts += 1
                time.sleep(rng.uniform(0, 0.002))
                continue
            start = time.monotonic_ns()
            # A fenced write: refused if anyone else held the lease meanwhile.
            reg.append_event(
                PID,
                ProcessEventAppendRequest(event_type="step", payload={"owner": owner, "fencing": lease.fencing_token}),
                lease=lease,
            )
            time.sleep(rng.uniform(0, 0.003))
            end = time.monotonic_ns()
            assert reg.complete_process_lease(lease.completion()) is True
            out.append((lease.fencing_token, owner, start, end))
            time.sleep(rng.uniform(0, 0.001))
    finally:
        reg.close()
    return out


def _lease_worker(results, path: str, owner: str, holds: int, barrier) -> None:
    _report(results, owner, _lease_holds, path, owner, holds, barrier)


def test_contending_processes_never_hold_the_same_lease_at_once(tmp_path):
    path = str(tmp_path / "processes.db")
    with SqliteProcessRegistry(path) as reg:
        reg.register_process(ProcessRegistration.new(PID).with_extra_event_types(ProcessEventType("step")))
    results = CTX.Queue()
    barrier = CTX.Barrier(2)
    owners = ["owner-a", "owner-b"]
    procs = [
        CTX.Process(target=_lease_worker, args=(results, path, o, HOLDS_PER_WORKER, barrier), daemon=True) for o in owners
    ]
    for p in procs:
        p.start()
    out = _collect(results, procs, len(procs), WORKER_TIMEOUT_S)
    results.close()

    holds = sorted((h for o in owners for h in out[o]), key=lambda h: h[2])
    assert len(holds) == 2 * HOLDS_PER_WORKER
    for prev, nxt in zip(holds, holds[1:]):
        assert prev[3] < nxt[2], f"lease windows overlap: {prev} and {nxt}"
        assert prev[0] < nxt[0], f"fencing did not rise: {prev} then {nxt}"
    with SqliteProcessRegistry(path) as reg:
        events = reg.events_after(PID, 0)
        assert len(events) == len(holds)
        # The fenced writes landed in lease order.
        assert [e.payload["fencing"] for e in events] == [h[0] for h in holds]
        assert [e.payload["owner"] for e in events] == [h[1] for h in holds]
        assert reg.get_process_lease(PID) is None


# -- cross-process wake ----------------------------------------------------------------------------

TRIES = 7


def _wait_loop(path: str, ready, tries: int) -> list[float]:
    reg = SqliteProcessRegistry(path)
    woke: list[float] = []
    try:
        for i in range(tries):
            ready.put(i)
            event = reg.wait_event_after("proc-wake", "tick", i, timeout=20.0)
            woke.append(time.monotonic())
            assert event.sequence == i + 1, event
    finally:
        reg.close()
    return woke


def _waiter(results, path: str, ready, tries: int) -> None:
    _report(results, "waiter", _wait_loop, path, ready, tries)


def _next_ready(ready, proc) -> int:
    """The waiter's next "ready" signal; fails fast if the waiter died instead of sending it."""
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return ready.get(timeout=0.5)
        except queue.Empty:
            assert proc.is_alive(), f"the waiter exited early (exit code {proc.exitcode})"
    raise AssertionError("the waiter never became ready")


def test_waiter_in_another_process_wakes_within_100_ms(tmp_path):
    path = str(tmp_path / "processes.db")
    reg = SqliteProcessRegistry(path)
    reg.register_process(ProcessRegistration.new("proc-wake").with_extra_event_types(ProcessEventType("tick")))
    results = CTX.Queue()
    ready = CTX.Queue()
    proc = CTX.Process(target=_waiter, args=(results, path, ready, TRIES), daemon=True)
    proc.start()
    appended: list[float] = []
    rng = random.Random(7)
    try:
        for i in range(TRIES):
            assert _next_ready(ready, proc) == i
            # Let the waiter back off to its longest poll interval, at a random phase of it.
            time.sleep(0.15 + rng.uniform(0, 0.05))
            appended.append(time.monotonic())
            reg.append_event("proc-wake", ProcessEventAppendRequest(event_type="tick", payload=i))
    finally:
        reg.close()
    out = _collect(results, [proc], 1, WORKER_TIMEOUT_S)
    results.close()
    ready.close()
    latencies = [w - a for w, a in zip(out["waiter"], appended)]
    assert len(latencies) == TRIES
    assert all(lat >= 0 for lat in latencies), latencies
    assert statistics.median(latencies) < 0.100, f"median wake latency {statistics.median(latencies):.3f}s: {latencies}"
