"""Retention over OpenAI Agents SDK sessions: `lashstore retain --keep-turns N` changes what the
SDK reads from a `LashstoreSession` (its last N turns) and gives the bytes back, although the
adapter keeps copies of the items in history segments (artifacts) for fast reads.

On the memory, SQLite and PostgreSQL backends. Skipped only when the SDK is not installed and CI
is unset; in CI a missing package fails.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[openai-agents]')", allow_module_level=True)


_require("agents")

import lashstore  # noqa: E402
from lashstore import ops  # noqa: E402
from lashstore.cli import EXIT_OK, main  # noqa: E402
from lashstore.integrations.openai_agents import LashstoreSession  # noqa: E402

from postgres_support import deployment_url, postgres_url  # noqa: E402,F401  (the fixture)

BACKENDS = ["memory", "sqlite", "postgres"]
NS = "agents-history"  # the adapter's segment namespace


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return deployment_url(request.getfixturevalue("postgres_url"), f"oar_{uuid.uuid4().hex[:12]}")
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'store'}"


def _turns(first: int, n: int) -> list[dict]:
    out: list[dict] = []
    for i in range(first, first + n):
        out += [{"role": "user", "content": f"question {i}"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": f"answer {i}"}]}]
    return out


def _fill(session: LashstoreSession, items: list[dict]) -> None:
    """Two items per add_items call, as the Runner saves a turn: several segments and a tail."""
    for i in range(0, len(items), 2):
        asyncio.run(session.add_items(items[i:i + 2]))


def _segments(store: Any) -> dict[str, str]:
    return {name: ref for _, name, ref in store.list_artifacts(namespace=NS)}


def _check_reads(session: LashstoreSession, items: list[dict]) -> None:
    assert asyncio.run(session.get_items()) == items
    for limit in (1, 5, len(items) - 1, len(items), len(items) + 50, 1000):
        if limit > 0:
            assert asyncio.run(session.get_items(limit=limit)) == items[-limit:]


def test_retain_keep_turns_changes_what_the_sdk_sees(url: str) -> None:
    """200 items (100 turns), `retain(keep_turns=10)`: the SDK sees the last 20 items, through a
    session object opened before the retention and through a new one; the segment copies and
    their blobs are gone; the history goes on from there (new segments, pops, a restart)."""
    items = _turns(0, 100)
    with lashstore.open(url) as dep:
        before = LashstoreSession("chat", dep)
        _fill(before, items)
        _check_reads(before, items)
        store = dep.sessions.open_store("chat")
        old_segments = _segments(store)
        assert len(old_segments) == 3  # 192 items in segments of 64, 8 after them

        report = ops.retain(dep, ops.RetentionPolicy(keep_turns=10, gc_grace_ms=0))
        assert report.graph_nodes == 180 and report.errors == 0
        kept = items[-20:]
        _check_reads(LashstoreSession("chat", dep), kept)
        _check_reads(before, kept)  # an object holding the pre-retention head

        # The copies went, and gc collected their bytes.
        assert _segments(store) == {}
        assert report.blobs >= 3 and report.blob_bytes > 0
        for ref in old_segments.values():
            assert store.get_blob(ref) is None
        store.close()

        # The history goes on: a new segment holds the kept items and the new ones.
        more = _turns(100, 40)
        _fill(before, more)
        _check_reads(LashstoreSession("chat", dep), kept + more)
        store = dep.sessions.open_store("chat")
        assert _segments(store) and not set(_segments(store)) & set(old_segments)
        store.close()
        history = kept + more
        for _ in range(30):
            assert asyncio.run(before.pop_item()) == history.pop()
        _check_reads(LashstoreSession("chat", dep), history)


def test_retain_dry_run_changes_nothing_the_sdk_sees(url: str) -> None:
    items = _turns(0, 100)
    with lashstore.open(url) as dep:
        _fill(LashstoreSession("chat", dep), items)
        store = dep.sessions.open_store("chat")
        segments = _segments(store)
        report = ops.retain(dep, ops.RetentionPolicy(keep_turns=10, gc_grace_ms=0), dry_run=True)
        assert report.graph_nodes == 180
        assert _segments(store) == segments
        store.close()
        _check_reads(LashstoreSession("chat", dep), items)


@pytest.mark.parametrize("keep_turns", [3, 10])
def test_adapter_reads_a_graph_pruned_under_it(url: str, keep_turns: int) -> None:
    """The graph pruned by the store alone (segments left behind, as an older `lashstore retain`
    or a hand edit leaves them): reads, pops and appends follow the graph, and the first append
    replaces the stale segments. keep_turns 10 keeps the newest segment's last item, 3 does not."""
    items = _turns(0, 100)
    with lashstore.open(url) as dep:
        session = LashstoreSession("chat", dep)
        _fill(session, items)
        store = dep.sessions.open_store("chat")
        old_segments = _segments(store)
        assert store.prune_graph(keep_turns).removed_node_count == 200 - 2 * keep_turns
        history = items[-2 * keep_turns:]
        _check_reads(LashstoreSession("chat", dep), history)
        _check_reads(session, history)

        # Pops down past the newest segment's last item.
        for _ in range(keep_turns + 2):
            assert asyncio.run(session.pop_item()) == history.pop()
        _check_reads(LashstoreSession("chat", dep), history)

        more = _turns(200, 50)
        _fill(LashstoreSession("chat", dep), more)
        history += more
        _check_reads(session, history)
        _check_reads(LashstoreSession("chat", dep), history)
        assert not set(_segments(store)) & set(old_segments)  # the stale copies are gone
        store.close()
        while history:
            assert asyncio.run(session.pop_item()) == history.pop()
        assert asyncio.run(session.pop_item()) is None
        assert asyncio.run(LashstoreSession("chat", dep).get_items()) == []


def test_cli_retain_keep_turns_on_an_agents_session(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What the tester ran: `lashstore retain --keep-turns 10` on a store holding an Agents
    session of 200 items; afterwards `get_items()` returns the last 10 turns."""
    monkeypatch.delenv("LASHSTORE_URL", raising=False)
    root = tmp_path / "store"
    items = [{"role": "user", "content": f"message {i}"} for i in range(200)]  # a turn each
    session = LashstoreSession("agents-chat", f"sqlite:///{root}")
    _fill(session, items)
    session.close()
    capsys.readouterr()
    rc = main(["--store", str(root), "retain", "--keep-turns", "10", "--grace", "0s", "--json"])
    out, err = capsys.readouterr()
    assert rc == EXIT_OK, err
    report = json.loads(out)
    assert report["graph_nodes"] == 190 and report["errors"] == 0
    assert report["blobs"] == 3 and report["reclaimed_bytes"] > 0  # the segment copies went too
    again = LashstoreSession("agents-chat", f"sqlite:///{root}")
    try:
        _check_reads(again, items[-10:])
    finally:
        again.close()
