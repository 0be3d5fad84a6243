"""A `lashstore copy` killed part way: the destination says it is incomplete (verify, the
sessions listing), and running the same copy again resumes it to a verified, unmarked copy."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

import lashstore
from lashstore import ops
from lashstore.cli import main
from lashstore.testing.postgres import fresh_schema
from lashstore.testing.session_suite import node, runtime_commit
from postgres_support import deployment_url, postgres_url  # noqa: F401 - the fixture

SESSIONS = [f"s{i:02d}" for i in range(8)]


def _populate(root) -> None:
    with lashstore.open(f"sqlite:///{root}") as dep:
        for i, sid in enumerate(SESSIONS):
            s = dep.sessions.create_store(sid)
            s.commit_runtime_state(runtime_commit(sid, nodes=[node("u"), node("a", "u")], leaf="a",
                                                  tool_state={"i": i, "pad": "x" * 5000}))
            s.close()


def _copy_then_die(source: str, destination: str, after: int) -> None:
    def progress(label: str, done: int, total: int) -> None:
        if label == "sessions" and done == after:
            os.kill(os.getpid(), signal.SIGKILL)

    ops.copy(source, destination, progress=progress)


def _copy_then_die_loading(source: str, destination: str, nth: int) -> None:
    """Killed after creating the nth session in the destination, before loading its rows."""
    from lashstore.engine.sessions import SessionEngine

    real, calls = SessionEngine.load_session_dump, []

    def load(self, dump):
        calls.append(dump.session_id)
        if len(calls) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, dump)

    SessionEngine.load_session_dump = load
    ops.copy(source, destination)


def _exports(url: str) -> dict[str, bytes]:
    import io

    out = {}
    with lashstore.open(url) as dep:
        for sid in SESSIONS:
            buf = io.BytesIO()
            ops.export_session(dep, sid, buf)
            out[sid] = b"".join(buf.getvalue().splitlines(keepends=True)[1:])
    return out


@pytest.mark.parametrize("dst_kind", ["sqlite", "postgres"])
def test_a_killed_copy_is_marked_incomplete_and_resumes(dst_kind, tmp_path, request, capsys):
    src = str(tmp_path / "src")
    _populate(src)
    if dst_kind == "sqlite":
        dst = f"sqlite:///{tmp_path / 'dst'}"
    else:
        dst = deployment_url(request.getfixturevalue("postgres_url"), fresh_schema("copy"))
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_copy_then_die, args=(src, dst, 3))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL

    with lashstore.open(dst) as dep:
        mark = dep.incomplete_copy()
        assert mark is not None and "src" in mark["source"]
        listed = [s.session_id for s in dep.sessions.list_sessions()]
        assert 3 <= len(listed) < len(SESSIONS)
        report = ops.verify(dep)
        assert not report.ok and any(p.what == "copy" for p in report.problems)
    assert main(["--store", dst, "sessions"]) == 0
    assert "unfinished copy" in capsys.readouterr().err
    assert main(["--store", dst, "verify"]) != 0

    # Another source is refused while the mark is there.
    other = tmp_path / "other"
    with lashstore.open(str(other)) as dep:
        dep.sessions.create_store("elsewhere").close()
    with pytest.raises(lashstore.ValidationError, match="unfinished copy"):
        ops.copy(str(other), dst)

    report = ops.copy(src, dst)
    assert report.verified and report.sessions == len(SESSIONS) and report.resumed >= 3
    with lashstore.open(dst) as dep:
        assert dep.incomplete_copy() is None
        assert ops.verify(dep).ok
        assert sorted(s.session_id for s in dep.sessions.list_sessions()) == SESSIONS
    assert _exports(dst) == _exports(src)
    capsys.readouterr()
    assert main(["--store", dst, "sessions"]) == 0
    assert "unfinished" not in capsys.readouterr().err


@pytest.mark.parametrize("dst_kind", ["sqlite", "postgres"])
def test_a_copy_killed_between_creating_and_loading_a_session_resumes(dst_kind, tmp_path, request):
    src = str(tmp_path / "src")
    _populate(src)
    if dst_kind == "sqlite":
        dst = f"sqlite:///{tmp_path / 'dst'}"
    else:
        dst = deployment_url(request.getfixturevalue("postgres_url"), fresh_schema("copy"))
    child = multiprocessing.get_context("spawn").Process(target=_copy_then_die_loading, args=(src, dst, 2))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    with lashstore.open(dst) as dep:
        assert dep.incomplete_copy() is not None
        # The second session exists, empty: its rows were never loaded.
        with dep.sessions.open_store(SESSIONS[1]) as store:
            assert store.load_head() is None
    report = ops.copy(src, dst)
    assert report.verified and report.resumed == 1
    assert _exports(dst) == _exports(src)
