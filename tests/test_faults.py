"""Faults a demanding user meets, on real file systems and real processes: a full disk, a read-only
mount, a directory that cannot be made, no file descriptors left, a damaged head row, a planted
decompression bomb, an export target that is a device, a FIFO or a symlink, bad URL options, and
a session deleted by another process while this one writes to it.

Mounts (a small tmpfs for the full disk, a read-only bind mount) need root, which CI has; they
are made inside the test's own temporary directory and always unmounted.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import lashstore
from lashstore import ops
from lashstore.cli import main
from lashstore.errors import (
    CorruptRecord,
    SessionDeleted,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
    ValidationError,
)
from lashstore.testing.session_suite import node, runtime_commit


def _mount(args: list[str], where: Path) -> None:
    r = subprocess.run(["mount", *args, str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here ({r.stderr.strip() or r.returncode}); this test needs root, as CI has")


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Path:
    where.mkdir()
    _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"], where)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@contextlib.contextmanager
def read_only_view(source: Path, where: Path) -> Path:
    where.mkdir()
    _mount(["--bind", str(source)], where)
    try:
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only ({r.stderr.strip()})")
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of `folder` until about `leave` bytes are free."""
    filler = folder / "filler"
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def _store(root: Path, sessions: int = 2) -> None:
    with lashstore.open(str(root)) as dep:
        for i in range(sessions):
            s = dep.sessions.create_store(f"s{i}")
            s.commit_runtime_state(runtime_commit(f"s{i}", nodes=[node("u"), node("a", "u")], leaf="a",
                                                  tool_state={"i": i}))
            s.close()


# -- item 12: a full disk -----------------------------------------------------------------------


def test_create_store_on_a_full_disk_leaves_no_trace(tmp_path):
    with tmpfs(tmp_path / "small", "1m") as disk:
        root = disk / "store"
        _store(root, 1)
        writer_dep = lashstore.open(str(root))
        writer = writer_dep.sessions.open_store("s0")  # open before the disk fills: its -shm exists
        filler = _fill(disk, 4096)
        with lashstore.open(str(root)) as dep:
            with pytest.raises(StoreFull, match="disk is full"):
                dep.sessions.create_store("new-session")
            assert not dep.sessions.has_session("new-session")
            listed = dep.sessions.list_sessions()
            assert [s.session_id for s in listed] == ["s0"], listed
            assert sorted(p.name for p in root.iterdir() if not p.name.startswith("s0-")) == []
            # A commit that does not fit is refused; what was acknowledged reads back.
            with pytest.raises(StoreFull):
                writer.commit_runtime_state(runtime_commit("s0", expected_head_revision=1,
                                                           tool_state={"big": os.urandom(400_000).hex()}))
            read = writer.load_session()
            assert read is not None and read.head_revision == 1 and read.checkpoint.tool_state == {"i": 0}
            # Another handle reads it too (its -shm exists while the writer has it open).
            with dep.sessions.open_store("s0") as other:
                assert other.load_head().head_revision == 1
        writer.close()
        writer_dep.close()
        filler.unlink()
        with lashstore.open(str(root)) as dep:
            assert ops.verify(dep).ok
            ops.gc(dep)
            dep.sessions.create_store("new-session").close()
            assert dep.sessions.has_session("new-session")


# -- item 13: a read-only mount -----------------------------------------------------------------


def test_a_store_on_a_read_only_mount_reads_and_refuses_writes(tmp_path, capsys):
    src = tmp_path / "store"
    _store(src)
    with read_only_view(src, tmp_path / "ro") as ro:
        with lashstore.open(str(ro)) as dep:
            assert dep.options.readonly
            assert sorted(s.session_id for s in dep.sessions.list_sessions()) == ["s0", "s1"]
            assert all(s.error is None for s in dep.sessions.list_sessions())
            store = dep.sessions.open_store("s0")
            assert store.load_session().checkpoint.tool_state == {"i": 0}
            with pytest.raises(StoreReadOnly):
                store.commit_runtime_state(runtime_commit("s0", expected_head_revision=1))
            with pytest.raises(StoreReadOnly):
                store.put_blob(b"x")
            store.close()
            with pytest.raises(StoreReadOnly):
                dep.sessions.create_store("s9")
            with pytest.raises(StoreReadOnly):
                dep.sessions.delete_session("s0")
            report = ops.verify(dep)
            assert report.ok and report.problems == [] and report.records > 0
            buf = io.BytesIO()
            ops.export_session(dep, "s1", buf)
            assert buf.getvalue().count(b"\n") > 3
        for argv in (["sessions"], ["show", "s0"], ["verify"], ["export", "s0", "-o", str(tmp_path / "s0.jsonl")]):
            assert main(["--store", str(ro), *argv]) == 0, argv
        capsys.readouterr()
        assert main(["--store", str(ro), "demo"]) == 1
        err = capsys.readouterr().err
        assert "read-only" in err and "Traceback" not in err
    assert (tmp_path / "s0.jsonl").stat().st_size > 0


def test_readonly_option_opens_a_writable_store_read_only(tmp_path):
    root = tmp_path / "store"
    _store(root)
    with lashstore.open(f"sqlite:///{root}?mode=ro") as dep:
        store = dep.sessions.open_store("s0")
        assert store.load_head().head_revision == 1
        with pytest.raises(StoreReadOnly):
            store.commit_runtime_state(runtime_commit("s0", expected_head_revision=1))
        store.close()


# -- item 20: a directory that cannot be made, no file descriptors left --------------------------


def test_a_store_that_cannot_be_created_is_a_typed_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    with lashstore.open(str(blocker / "store")) as dep:
        with pytest.raises(StoreUnavailable, match="in the way|not a directory"):
            dep.sessions.create_store("s")
    assert main(["--store", str(blocker / "store"), "demo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and err.count("\n") == 1
    (tmp_path / "src").mkdir()
    with read_only_view(tmp_path / "src", tmp_path / "ro") as ro:
        with lashstore.open(str(ro / "store")) as dep:
            with pytest.raises(StoreReadOnly):
                dep.sessions.create_store("s")
        assert main(["--store", str(ro / "store"), "demo"]) == 1
        err = capsys.readouterr().err
        assert "read-only" in err and "Traceback" not in err


def test_running_out_of_file_descriptors_says_so(tmp_path):
    script = textwrap.dedent(f"""
        import resource, sys
        import lashstore
        from lashstore.errors import StoreUnavailable
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        dep = lashstore.open({str(tmp_path / "store")!r})
        held = []
        try:
            for i in range(200):
                held.append(dep.sessions.create_store(f"s{{i}}"))
        except StoreUnavailable as e:
            print("typed", len(held), e)
            sys.exit(0)
        print("no error", len(held))
        sys.exit(1)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "file descriptors" in r.stdout and "ulimit" in r.stdout


# -- item 7: a damaged head row ------------------------------------------------------------------


@pytest.mark.parametrize("column,value", [("head_revision", "garbage"), ("node_count", -4), ("leaf_node_id", b"\x07"),
                                          ("updated_at_ms", 1.5), ("body", "text")])
def test_a_damaged_head_column_is_corrupt_and_verify_names_it(tmp_path, column, value):
    root = tmp_path / "store"
    _store(root, 1)
    with lashstore.open(str(root)) as dep:
        path = dep.storage.session_path("s0")
    with sqlite3.connect(path) as c:
        c.execute(f"UPDATE session_head SET {column} = ?", (value,))
    c.close()
    with lashstore.open(str(root)) as dep:
        store = dep.sessions.open_store("s0")
        with pytest.raises(CorruptRecord):
            store.load_head()
        with pytest.raises(CorruptRecord):
            store.load_session()
        if column in ("head_revision", "node_count", "leaf_node_id"):  # what a commit reads of the head
            with pytest.raises(CorruptRecord):
                store.commit_runtime_state(runtime_commit("s0", expected_head_revision=1))
        store.close()
        report = ops.verify(dep)
        assert not report.ok
        assert any(column in p.detail for p in report.problems), report.problems


def test_garbage_token_counts_are_found(tmp_path):
    root = tmp_path / "store"
    with lashstore.open(str(root)) as dep:
        s = dep.sessions.create_store("s")
        s.commit_runtime_state(runtime_commit("s", usage=[lashstore.TokenLedgerEntry("t", "m",
                                                          lashstore.TokenUsage(input_tokens=5))]))
        s.close()
        path = dep.storage.session_path("s")
    with sqlite3.connect(path) as c:
        c.execute("UPDATE usage_deltas SET input_tokens = 'lots'")
    c.close()
    with lashstore.open(str(root)) as dep:
        with pytest.raises(CorruptRecord):
            dep.sessions.open_store("s").load_usage()
        assert any("input_tokens" in p.detail for p in ops.verify(dep).problems)


# -- item 21: a decompression bomb ---------------------------------------------------------------


def test_a_planted_decompression_bomb_is_refused_in_bounded_memory(tmp_path):
    from lashstore.codec import _zstd

    root = tmp_path / "store"
    _store(root, 1)
    with lashstore.open(str(root)) as dep:
        path = dep.storage.session_path("s0")
    comp = _zstd.ZstdCompressor(level=1)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(comp.compress(chunk) for _ in range(1024)) + comp.flush()
    ref = "ab" * 32
    with sqlite3.connect(path) as c:
        c.execute("INSERT INTO blobs (hash, kind, compression, raw_size, created_at_ms, content) VALUES (?,?,?,?,?,?)",
                  (ref, "generic", "zstd", 1 << 30, 0, bomb))
    c.close()
    script = textwrap.dedent(f"""
        import resource, lashstore
        from lashstore.errors import CorruptRecord
        dep = lashstore.open({str(root)!r})
        store = dep.sessions.open_store("s0")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            store.get_blob({ref!r})
        except CorruptRecord as e:
            print("corrupt", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.stdout.startswith("corrupt"), r.stdout + r.stderr
    assert int(r.stdout.split()[1]) < 300, f"peak grew by {r.stdout.split()[1]} MB"


# -- item 14: export targets --------------------------------------------------------------------


def test_export_never_replaces_anything_but_a_regular_file(tmp_path, capsys):
    root = tmp_path / "store"
    _store(root, 1)
    store = f"sqlite:///{root}"
    # A symlink: the file it points at is replaced, the link stays a link.
    target = tmp_path / "real.jsonl"
    target.write_bytes(b"old")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert main(["--store", store, "export", "s0", "-o", str(link)]) == 0
    assert link.is_symlink() and target.read_bytes().startswith(b'{"format":"lashstore-session"')
    # A FIFO: written to, never replaced.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    assert main(["--store", store, "export", "s0", "-o", str(fifo)]) == 0
    reader.join(30)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got and got[0].startswith(b'{"format"')
    # A character device (a /dev/null of our own, where mknod is allowed).
    dev = tmp_path / "null"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        dev = None
    if dev is not None:
        assert main(["--store", store, "export", "s0", "-o", str(dev)]) == 0
        assert stat.S_ISCHR(os.lstat(dev).st_mode)
    # Standard output.
    capsys.readouterr()
    assert main(["--store", store, "export", "s0", "-o", "-"]) == 0
    # A failure leaves the old file and no partial file.
    keep = tmp_path / "keep.jsonl"
    keep.write_bytes(b"keep me")
    assert main(["--store", store, "export", "nope", "-o", str(keep)]) == 3
    assert keep.read_bytes() == b"keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    with lashstore.open(store) as dep, pytest.raises(ValidationError, match="directory"):
        ops.export_session_to(dep, "s0", tmp_path)


# -- item 18: URL options ----------------------------------------------------------------------


@pytest.mark.parametrize("query", ["blob_profile=nope", "synchronous=maybe", "compression_level=0",
                                   "compression_level=x", "busy_timeout_ms=-1", "readonly=perhaps", "mode=rx",
                                   "unknown=1"])
def test_bad_url_options_are_validation_errors_and_one_line_in_the_cli(tmp_path, query, capsys):
    url = f"sqlite:///{tmp_path / 'x'}?{query}"
    with pytest.raises(ValidationError):
        lashstore.open(url)
    assert main(["--store", url, "sessions"]) in (1, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    with pytest.raises(ValidationError):
        lashstore.open(str(tmp_path / "y"), no_such_option=1)


# -- item 1, with two OS processes ----------------------------------------------------------------


def _writer(root: str, conn) -> None:
    dep = lashstore.open(root)
    store = dep.sessions.create_store("shared")
    store.commit_runtime_state(runtime_commit("shared", nodes=[node("n1")], leaf="n1"))
    conn.send("ready")
    for _ in range(2):
        conn.recv()
        try:
            store.commit_runtime_state(runtime_commit("shared", nodes=[node("n2")], leaf="n2"))
            conn.send("committed")
        except SessionDeleted:
            conn.send("SessionDeleted")
    conn.recv()
    store.close()  # must not remove the new session's -wal / -shm by name
    dep.close()
    conn.send("closed")


def test_a_session_deleted_by_another_process_is_never_written(tmp_path):
    root = str(tmp_path / "store")
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_writer, args=(root, theirs))
    child.start()
    try:
        assert ours.recv() == "ready"
        with lashstore.open(root) as dep:
            assert dep.sessions.delete_session("shared")
            ours.send("go")
            assert ours.recv() == "SessionDeleted"
            assert not dep.sessions.has_session("shared")
            fresh = dep.sessions.create_store("shared")
            fresh.commit_runtime_state(runtime_commit("shared", nodes=[node("m1")], leaf="m1"))
            ours.send("go")
            assert ours.recv() == "SessionDeleted"
            ours.send("close")
            assert ours.recv() == "closed"
            # The new session (its WAL included) is intact after the old handle closed.
            fresh.commit_runtime_state(runtime_commit("shared", expected_head_revision=1,
                                                      graph=lashstore.GraphAppend([node("m2", "m1")], "m2")))
            fresh.close()
        with lashstore.open(root) as dep:
            read = dep.sessions.open_store("shared").load_session()
            assert [n.node_id for n in read.graph.nodes] == ["m1", "m2"] and read.head_revision == 2
            assert ops.verify(dep).ok
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
