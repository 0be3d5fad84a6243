"""The operations commands: graph, usage, sessions filters, gc, vacuum, retain, verify, export,
import, migrate; their JSON, their exit statuses, and their help."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import lashstore
from lashstore.cli import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main
from lashstore.cli.ops import EXIT_DAMAGED, EXIT_EXISTS, parse_duration


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LASHSTORE_URL", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, status: int = EXIT_OK) -> object:
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == status, err
    return json.loads(out)


@pytest.fixture
def demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    store = str(tmp_path / "store")
    rc, _, err = run(capsys, "--store", store, "demo")
    assert rc == EXIT_OK, err
    return store


def test_every_new_command_has_help_with_examples(capsys):
    for command in ("graph", "usage", "gc", "vacuum", "retain", "verify", "export", "import", "migrate", "sessions"):
        rc, out, _ = run(capsys, command, "--help")
        assert rc == EXIT_OK and "examples:" in out and f"lashstore {command}" in out, command
    rc, out, _ = run(capsys, "--help")
    assert "4 verify found damaged records" in out and "5 import refused" in out


def test_durations():
    assert parse_duration("500ms") == 500
    assert parse_duration("90") == 90_000
    assert parse_duration("15m") == 900_000
    assert parse_duration("7d") == 7 * 86_400_000
    assert parse_duration("1.5h") == 5_400_000
    rc = main(["retain", "--keep-turns", "2", "--finished-work-older-than", "soon"])
    assert rc == EXIT_USAGE


def test_sessions_match_sort_and_paginate(tmp_path, capsys):
    store = str(tmp_path / "store")
    with lashstore.open(store) as dep:
        for sid, name, turns in (("chat-a", "Zebra", 3), ("chat-b", "apple", 1), ("job-c", "Mango", 2)):
            s = dep.sessions.create_store(sid, session_name=name)
            for i in range(turns):
                s.commit_runtime_state(lashstore.RuntimeCommit(session_id=sid, expected_head_revision=i))
            s.close()
    ids = lambda *a: [r["session_id"] for r in run_json(capsys, "--store", store, "sessions", *a)]  # noqa: E731
    assert ids("--match", "chat-*") == ["chat-b", "chat-a"] or sorted(ids("--match", "chat-*")) == ["chat-a", "chat-b"]
    assert ids("--match", "ANG") == ["job-c"]  # substring of the name, any case
    assert ids("--sort", "name") == ["chat-b", "job-c", "chat-a"]
    assert ids("--sort", "revision") == ["chat-a", "job-c", "chat-b"]
    assert ids("--sort", "revision", "--limit", "2") == ["chat-a", "job-c"]
    assert ids("--sort", "revision", "--offset", "1", "--limit", "5") == ["job-c", "chat-b"]
    assert ids("--match", "nothing") == []
    rc, out, _ = run(capsys, "--store", store, "sessions", "--sort", "revision", "--limit", "1")
    assert rc == EXIT_OK and "sessions 1-1 of 3" in out and "chat-a" in out
    rc, out, _ = run(capsys, "--store", store, "sessions", "--match", "zzz")
    assert rc == EXIT_OK and "none of the 3 sessions" in out


def test_graph_shows_branches_tombstones_and_the_active_path(demo, capsys):
    rc, out, _ = run(capsys, "--store", demo, "graph", "demo-session")
    assert rc == EXIT_OK
    assert "branch at t05-reply: 8 nodes" in out
    assert "✝ t06-tool" in out and "(tombstoned)" in out
    assert "● t12-reply" in out and "(leaf)" in out
    assert "48 nodes, 1 branch point, 1 tombstoned" in out
    report = run_json(capsys, "--store", demo, "graph", "demo-session")
    assert report["node_count"] == 48 and report["tombstoned_count"] == 1 and report["branch_count"] == 1
    nodes = {n["node_id"]: n for n in report["nodes"]}
    assert nodes["t06-tool"]["tombstoned"] and not nodes["t06-user"]["on_active_path"]
    assert nodes["t05-reply"]["children"] == ["t06-user", "t08-user"]
    rc, _, err = run(capsys, "--store", demo, "graph", "nope")
    assert rc == EXIT_NOT_FOUND and "nope" in err


def test_usage_over_all_sessions_and_one(demo, capsys):
    report = run_json(capsys, "--store", demo, "usage")
    per = {s["session_id"]: s["total"] for s in report["sessions"]}
    assert set(per) == {"demo-session", "demo-session-research"} and report["total"] == sum(per.values())
    assert {(e["source"], e["model"]) for e in report["totals"]} == {("turn", "gpt-5.4-mini"),
                                                                     ("summariser", "gpt-5.4-nano")}
    one = run_json(capsys, "--store", demo, "usage", "demo-session-research")
    assert [s["session_id"] for s in one["sessions"]] == ["demo-session-research"]
    rc, out, _ = run(capsys, "--store", demo, "usage")
    assert rc == EXIT_OK and "Token usage of 2 sessions" in out and "Per session" in out
    rc, out, _ = run(capsys, "--store", demo, "usage", "--by", "model")
    assert "Per session" not in out
    rc, _, _ = run(capsys, "--store", demo, "usage", "nope")
    assert rc == EXIT_NOT_FOUND


def test_gc_and_vacuum_report_bytes(demo, capsys):
    dry = run_json(capsys, "--store", demo, "gc", "--grace", "0s", "--dry-run")
    assert dry["dry_run"] and dry["deleted_blob_count"] > 0 and dry["bytes_after"] is None
    report = run_json(capsys, "--store", demo, "gc", "--grace", "0s")
    assert report["deleted_blob_count"] == dry["deleted_blob_count"]
    assert report["reclaimed_bytes"] == report["bytes_before"] - report["bytes_after"] > 0
    rc, out, err = run(capsys, "--store", demo, "gc")
    assert rc == EXIT_OK and "deleted 0 blobs" in out and "collecting garbage" in err  # the progress bar
    vac = run_json(capsys, "--store", demo, "vacuum")
    assert vac["removed_node_count"] == 1  # the demo's tombstoned tool output
    rc, out, _ = run(capsys, "--store", demo, "vacuum")
    assert rc == EXIT_OK and "removed 0 tombstoned nodes" in out


def test_retain_dry_run_then_real(demo, capsys):
    rc, _, err = run(capsys, "--store", demo, "retain")
    assert rc == EXIT_USAGE and "at least one policy" in err
    dry = run_json(capsys, "--store", demo, "retain", "--keep-turns", "3", "--dry-run")
    assert dry["dry_run"] and dry["graph_nodes"] > 0
    assert run_json(capsys, "--store", demo, "graph", "demo-session")["node_count"] == 48
    real = run_json(capsys, "--store", demo, "retain", "--keep-turns", "3", "--grace", "0s",
                    "--finished-work-older-than", "0s")
    assert real["graph_nodes"] == dry["graph_nodes"] and real["queue_batches"] > 0
    assert real["reclaimed_bytes"] == real["bytes_before"] - real["bytes_after"] > 0
    assert run_json(capsys, "--store", demo, "graph", "demo-session")["node_count"] == 12
    rc, out, _ = run(capsys, "--store", demo, "retain", "--keep-turns", "3", "--dry-run")
    assert rc == EXIT_OK and "dry run" in out and "would remove 0 sessions, 0 graph nodes" in out
    rc, out, _ = run(capsys, "--store", demo, "retain", "--idle-for", "0s")
    assert rc == EXIT_OK and "removed 2 sessions" in out
    assert run_json(capsys, "--store", demo, "sessions") == []


def test_verify_exit_statuses(demo, capsys):
    report = run_json(capsys, "--store", demo, "verify")
    assert report["ok"] and report["problems"] == []
    rc, out, _ = run(capsys, "--store", demo, "verify")
    assert rc == EXIT_OK and "no damage found" in out
    path = lashstore.open(demo).storage.session_path("demo-session")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE graph_nodes SET body = x'c1' WHERE node_id = 't02-tool'")
    conn.commit()
    conn.close()
    report = run_json(capsys, "--store", demo, "verify", status=EXIT_DAMAGED)
    assert [(p["what"], p["key"]) for p in report["problems"]] == [("graph node", "t02-tool")]
    rc, out, err = run(capsys, "--store", demo, "verify")
    assert rc == EXIT_DAMAGED and "t02-tool" in out and "1 damaged records" in err


def test_export_import_round_trip_and_refusals(demo, tmp_path, capsys):
    out_file = tmp_path / "demo.jsonl"
    summary = run_json(capsys, "--store", demo, "export", "demo-session", "-o", str(out_file))
    assert summary[0]["session_id"] == "demo-session" and out_file.exists()
    other = str(tmp_path / "other")
    rc, out, _ = run(capsys, "--store", other, "import", str(out_file))
    assert rc == EXIT_OK and "demo-session" in out and "new" in out
    shown_a = run_json(capsys, "--store", demo, "show", "demo-session", "--full")
    shown_b = run_json(capsys, "--store", other, "show", "demo-session", "--full")
    for key in ("nodes", "usage", "head_revision", "checkpoint", "config", "queue", "meta"):
        assert shown_a[key] == shown_b[key], key
    rc, _, err = run(capsys, "--store", other, "import", str(out_file))
    assert rc == EXIT_EXISTS and "--replace" in err
    rc, out, _ = run(capsys, "--store", other, "import", str(out_file), "--replace")
    assert rc == EXIT_OK and "replaced" in out
    lines = out_file.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    bad = tmp_path / "v9.jsonl"
    bad.write_bytes(json.dumps({**header, "version": 9}).encode() + b"\n" + b"".join(lines[1:]))
    rc, _, err = run(capsys, "--store", str(tmp_path / "third"), "import", str(bad))
    assert rc == EXIT_ERROR and "version 9 is not supported" in err
    rc, _, err = run(capsys, "--store", str(tmp_path / "third"), "import", str(tmp_path / "missing.jsonl"))
    assert rc == EXIT_ERROR
    rc, _, err = run(capsys, "--store", demo, "export", "nope", "-o", str(tmp_path / "x.jsonl"))
    assert rc == EXIT_NOT_FOUND


def test_export_all_to_a_directory_and_to_stdout(demo, tmp_path, capsys):
    target = tmp_path / "backup"
    summary = run_json(capsys, "--store", demo, "export", "--all", "-o", str(target))
    assert sorted(s["session_id"] for s in summary) == ["demo-session", "demo-session-research"]
    assert len(list(target.glob("*.jsonl"))) == 2
    rc, out, err = run(capsys, "--store", demo, "export", "demo-session-research", "-o", "-")
    assert rc == EXIT_OK
    first = json.loads(out.splitlines()[0])
    assert first["format"] == "lashstore-session" and "Exported" in err
    rc, _, _ = run(capsys, "--store", demo, "export", "-o", str(target))
    assert rc == EXIT_USAGE


def test_migrate_reports_versions_before_and_after(tmp_path, capsys):
    from lashstore.backends.sqlite.connection import Database
    from lashstore.backends.sqlite.schema import KIND, LATEST, MIGRATIONS

    store = tmp_path / "store"
    with lashstore.open(str(store)) as dep:
        dep.sessions.create_store("new").close()
        path = Path(dep.storage.session_path("old"))
    Database(path, kind=KIND, migrations=MIGRATIONS[:1]).close()
    dry = run_json(capsys, "--store", str(store), "migrate", "--dry-run")
    by_name = {Path(f["path"]).name: f for f in dry["files"]}
    assert by_name[path.name]["before"] == 1 and dry["migrated"] == 1
    assert lashstore.backends.sqlite.deployment.schema_version(path)[0] == 1
    rc, out, _ = run(capsys, "--store", str(store), "migrate")
    assert rc == EXIT_OK and "migrated 1 of 2 files" in out
    assert lashstore.backends.sqlite.deployment.schema_version(path)[0] == LATEST
    again = run_json(capsys, "--store", str(store), "migrate")
    assert again["migrated"] == 0 and all(f["before"] == f["after"] == LATEST for f in again["files"])


def test_ops_never_import_rich():
    code = "import sys, lashstore, lashstore.ops; assert 'rich' not in sys.modules, 'rich imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
