"""Effect replay across real OS processes (spawn): one execution per key, and takeover of a
killed owner's lease.

Executions are counted by appending a line to a file (O_APPEND writes of one short line are
atomic), so the count is independent of the store under test. Every wait is bounded.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import time
import traceback
from pathlib import Path

import pytest

from lashstore.backends.sqlite.effects import SqliteEffectStore
from lashstore.model.effects import EffectScope, EffectStatus

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")

CTX = mp.get_context("spawn")
WORKER_TIMEOUT_S = 60.0
SCOPE = EffectScope.turn("session-1", "turn-1")


def _mark(count_file: str, line: str) -> None:
    fd = os.open(count_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _lines(count_file: Path) -> list[str]:
    return count_file.read_text().splitlines() if count_file.exists() else []


def _results(results: "mp.Queue", n: int, procs: list, timeout: float = WORKER_TIMEOUT_S) -> dict:
    out: dict = {}
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) + len(errors) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                status, tag, value = results.get(timeout=min(left, 1.0))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
                continue
            (out.__setitem__(tag, value) if status == "ok" else errors.append(f"worker {tag}:\n{value}"))
    finally:
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
            if p.is_alive():
                p.kill()
                p.join(5)
    assert not errors, "\n".join(errors)
    assert len(out) == n, f"only {len(out)} of {n} workers reported; exit codes {[p.exitcode for p in procs]}"
    return out


# -- workers (module level, so spawn can import them) -------------------------------------------


def _same_key_worker(results, path: str, count_file: str, keys: list[str], tag: int, barrier) -> None:
    try:
        store = SqliteEffectStore(path, lease_ttl_ms=2_000)
        try:
            out = []
            for key in keys:
                barrier.wait(timeout=WORKER_TIMEOUT_S)

                def run(key=key) -> dict:
                    _mark(count_file, f"{key} {os.getpid()}")
                    time.sleep(0.15)  # long enough that the others arrive while it runs
                    return {"key": key, "pid": os.getpid()}

                out.append(store.execute(SCOPE, key, {"key": key}, run))
            results.put(("ok", tag, out))
        finally:
            store.close()
    except BaseException:  # noqa: BLE001
        results.put(("error", tag, traceback.format_exc()))


def _doomed_worker(path: str, count_file: str, entered) -> None:
    store = SqliteEffectStore(path, lease_ttl_ms=600)

    def run() -> str:
        _mark(count_file, f"doomed {os.getpid()}")
        entered.set()
        time.sleep(WORKER_TIMEOUT_S)  # killed long before this ends
        return "doomed result"

    store.execute(SCOPE, "crash-key", {"q": "crash"}, run)


def _survivor_worker(results, path: str, count_file: str, started) -> None:
    try:
        store = SqliteEffectStore(path, lease_ttl_ms=600)
        try:
            started.set()
            t = time.monotonic()

            def run() -> str:
                _mark(count_file, f"survivor {os.getpid()}")
                return "survivor result"

            value = store.execute(SCOPE, "crash-key", {"q": "crash"}, run)
            results.put(("ok", "survivor", {"value": value, "waited_s": time.monotonic() - t}))
        finally:
            store.close()
    except BaseException:  # noqa: BLE001
        results.put(("error", "survivor", traceback.format_exc()))


# -- tests ---------------------------------------------------------------------------------------


def test_processes_running_one_key_execute_it_once(tmp_path: Path) -> None:
    path = tmp_path / "effects.db"
    count_file = tmp_path / "executions.log"
    SqliteEffectStore(path).close()  # schema made up front: this test is about the claim
    n_procs, keys = 3, [f"k{i}" for i in range(4)]
    barrier = CTX.Barrier(n_procs)
    results = CTX.Queue()
    procs = [
        CTX.Process(target=_same_key_worker, args=(results, str(path), str(count_file), keys, i, barrier), daemon=True)
        for i in range(n_procs)
    ]
    for p in procs:
        p.start()
    out = _results(results, n_procs, procs)

    executions = _lines(count_file)
    assert sorted(line.split()[0] for line in executions) == keys  # every key ran exactly once
    for j, key in enumerate(keys):
        outcomes = [out[i][j] for i in range(n_procs)]
        assert all(o == outcomes[0] for o in outcomes), outcomes  # everyone got the one recorded outcome
        runner = next(line.split()[1] for line in executions if line.split()[0] == key)
        assert outcomes[0] == {"key": key, "pid": int(runner)}
    with SqliteEffectStore(path) as store:
        for key in keys:
            rec = store.get_effect(SCOPE, key)
            assert rec.status is EffectStatus.COMPLETED and rec.attempts == 1


def test_killed_owner_lease_is_taken_over_after_expiry(tmp_path: Path) -> None:
    path = tmp_path / "effects.db"
    count_file = tmp_path / "executions.log"
    SqliteEffectStore(path).close()
    entered = CTX.Event()
    doomed = CTX.Process(target=_doomed_worker, args=(str(path), str(count_file), entered), daemon=True)
    doomed.start()
    results = CTX.Queue()
    survivor = None
    try:
        assert entered.wait(WORKER_TIMEOUT_S), "the doomed worker never started its effect"
        started = CTX.Event()
        survivor = CTX.Process(target=_survivor_worker, args=(results, str(path), str(count_file), started), daemon=True)
        survivor.start()
        assert started.wait(WORKER_TIMEOUT_S)
        # While the owner lives, its heartbeat keeps the 600 ms lease: the survivor waits.
        time.sleep(1.5)
        assert _lines(count_file) == [f"doomed {doomed.pid}"]
        with SqliteEffectStore(path) as store:
            rec = store.get_effect(SCOPE, "crash-key")
            assert rec.status is EffectStatus.IN_PROGRESS and rec.attempts == 1
        killed_at = time.monotonic()
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.join(10)
        assert doomed.exitcode == -signal.SIGKILL
        out = _results(results, 1, [survivor])
        took_over_after = time.monotonic() - killed_at
    finally:
        if doomed.is_alive():
            doomed.kill()
            doomed.join(5)
        if survivor is not None and survivor.is_alive():
            survivor.kill()
            survivor.join(5)

    assert out["survivor"]["value"] == "survivor result"
    assert out["survivor"]["waited_s"] >= 1.5
    assert took_over_after < 10.0
    assert _lines(count_file) == [f"doomed {doomed.pid}", f"survivor {survivor.pid}"]
    with SqliteEffectStore(path) as store:
        rec = store.get_effect(SCOPE, "crash-key")
        assert rec.status is EffectStatus.COMPLETED and rec.outcome == "survivor result" and rec.attempts == 2
        # Everyone after the takeover replays the survivor's outcome.
        assert store.execute(SCOPE, "crash-key", {"q": "crash"}, lambda: "third", strict=True) == "survivor result"
