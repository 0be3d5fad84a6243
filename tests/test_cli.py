"""The `lashstore` command: demo, sessions, show, exit statuses, and the rich boundary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lashstore
from lashstore.cli import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main

DEMO_TURNS = 12
TURN_MODEL = "gpt-5.4-mini"
SUMMARY_MODEL = "gpt-5.4-nano"


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LASHSTORE_URL", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "store")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    rc, out, err = run(capsys, *argv)
    assert rc == EXIT_OK, err
    return json.loads(out)


def expected_head(turns: int) -> int:
    # One revision per turn commit; tombstone_nodes bumps the head once more, and the demo
    # tombstones one node whenever it has room for a branch (4 turns or more).
    return turns + (1 if turns >= 4 else 0)


@pytest.fixture
def demo_store(store: str, capsys: pytest.CaptureFixture[str]) -> str:
    rc, out, err = run(capsys, "--store", store, "demo")
    assert rc == EXIT_OK, err
    return store


# -- demo ---------------------------------------------------------------------------------------


def test_demo_prints_what_is_stored(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "--store", store, "demo")
    assert rc == EXIT_OK, err
    assert "writing turns" in out  # the progress bar's final state
    for text in (
        "demo-session",
        "demo-session-research",
        "child of demo-session",
        f"{expected_head(DEMO_TURNS)}  ({DEMO_TURNS} turn commits + 1 tombstone bump)",
        "t12-reply (leaf)",
        TURN_MODEL,
        SUMMARY_MODEL,
        "raw (before compression)",
        "stored (after)",
        store,
    ):
        assert text in out, text
    path = lashstore.safe_file_name("demo-session")
    assert path in out
    assert (Path(store) / path).is_file()


def test_demo_writes_what_the_library_reads(demo_store: str) -> None:
    with lashstore.open(demo_store) as dep:
        store = dep.sessions.open_store("demo-session")
        try:
            head = store.load_head()
            path = store.load_session(lashstore.ActivePath())
            full = store.load_session(lashstore.FullGraph())
            meta = store.load_session_meta()
            stats = store.blob_stats()
        finally:
            store.close()
        child = dep.sessions.open_store("demo-session-research")
        try:
            child_meta = child.load_session_meta()
            child_head = child.load_head()
        finally:
            child.close()
    assert head is not None and path is not None and full is not None and meta is not None
    assert head.head_revision == expected_head(DEMO_TURNS)
    ids = [n.node_id for n in path.graph.nodes]
    all_ids = {n.node_id for n in full.graph.nodes}
    # The branch: turn 6's message was edited at turn 8, so turns 6-7 are off the active path ...
    assert "t08-user" in ids and "t06-user" not in ids and "t07-user" not in ids
    assert {"t06-user", "t07-reply"} <= all_ids
    # ... and the leaked tool output of turn 6 is tombstoned: gone from every read.
    assert "t06-tool" not in all_ids
    assert path.graph.nodes[0].payload == {
        "role": "user",
        "content": "The nightly build is red again, something in tests/test_parser.py. Can you take a look?",
    }
    cp = path.checkpoint
    assert cp is not None and cp.tool_state["generation"] == DEMO_TURNS
    assert isinstance(cp.execution_state, bytes) and cp.plugin_snapshot_revision >= 2
    # The head's tool state went back to the branch point, so the leaked key is not in it.
    assert "sk-demo" not in json.dumps(cp.tool_state)
    assert {(e.source, e.model) for e in path.token_ledger} == {("turn", TURN_MODEL), ("summariser", SUMMARY_MODEL)}
    assert stats["count"] > 0 and stats["stored_bytes"] < stats["raw_bytes"]  # some blobs were compressed
    assert meta.relation == lashstore.RootRelation()
    assert child_meta is not None and child_meta.relation.parent_session_id == "demo-session"
    assert child_head is not None and child_head.head_revision == 2


@pytest.mark.parametrize("turns", [1, 3, 4, 5, 8, 20])
def test_demo_turns(turns: int, store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "--store", store, "demo", "--turns", str(turns), "--session", f"s{turns}")
    assert rc == EXIT_OK, err
    shown = run_json(capsys, "--store", store, "show", f"s{turns}", "--json")
    assert shown["head_revision"] == expected_head(turns)
    assert shown["leaf_node_id"] == f"t{turns:02d}-reply"
    assert {u["model"] for u in shown["usage"]} == {TURN_MODEL, SUMMARY_MODEL}
    rows = run_json(capsys, "--store", store, "sessions", "--json")
    assert sorted(r["session_id"] for r in rows) == [f"s{turns}", f"s{turns}-research"]


def test_demo_rerun_replaces_the_session(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        rc, _, err = run(capsys, "--store", store, "demo", "--turns", "5")
        assert rc == EXIT_OK, err
    shown = run_json(capsys, "--store", store, "show", "demo-session", "--json", "--full")
    assert shown["head_revision"] == expected_head(5)
    assert len(run_json(capsys, "--store", store, "sessions", "--json")) == 2


def test_demo_in_memory_store(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "--store", "memory://", "demo", "--turns", "4")
    assert rc == EXIT_OK, err
    assert "this process only" in out


# -- sessions -----------------------------------------------------------------------------------


def test_sessions_json(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "--store", demo_store, "sessions", "--json")
    assert isinstance(rows, list) and len(rows) == 2
    by_id = {r["session_id"]: r for r in rows}
    root, child = by_id["demo-session"], by_id["demo-session-research"]
    assert root["error"] is None and child["error"] is None
    assert root["head_revision"] == expected_head(DEMO_TURNS)
    assert root["meta"]["relation"] == {"type": "root"}
    assert child["meta"]["relation"]["type"] == "child"
    assert child["meta"]["relation"]["parent_session_id"] == "demo-session"
    assert root["node_count"] > 0 and isinstance(root["updated_at_ms"], int)


def test_sessions_table(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--store", demo_store, "sessions")
    assert rc == EXIT_OK
    assert "2 sessions in" in out
    assert "child of demo-session" in out and "root" in out
    assert "Fix the CSV tokenizer" in out and "s ago" in out


def test_sessions_of_empty_store(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--store", store, "sessions")
    assert rc == EXIT_OK and "no sessions" in out
    assert run_json(capsys, "--store", store, "sessions", "--json") == []
    assert not Path(store).exists()  # a read never creates the store


def test_corrupt_session_file_is_listed_with_its_error(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    bad = Path(demo_store) / "bad-0123456789abcdef.db"
    bad.write_bytes(os.urandom(4096))
    rows = run_json(capsys, "--store", demo_store, "sessions", "--json")
    assert len(rows) == 3
    broken = [r for r in rows if r["error"]]
    assert [r["session_id"] for r in broken] == ["bad-0123456789abcdef"]
    assert "not a database" in broken[0]["error"]
    good = {r["session_id"] for r in rows if not r["error"]}
    assert good == {"demo-session", "demo-session-research"}

    rc, out, err = run(capsys, "--store", demo_store, "sessions")
    assert rc == EXIT_OK
    assert "bad-0123456789abcdef" in out and "error" in out and "demo-session-research" in out
    assert "1 session file could not be read" in err
    # The good sessions still open.
    assert run(capsys, "--store", demo_store, "show", "demo-session")[0] == EXIT_OK


# -- show ---------------------------------------------------------------------------------------


def test_show_json(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    shown = run_json(capsys, "--store", demo_store, "show", "demo-session", "--json")
    assert shown["session_id"] == "demo-session"
    assert shown["head_revision"] == expected_head(DEMO_TURNS)
    assert shown["scope"] == "active_path"
    nodes = shown["nodes"]
    assert nodes and nodes[-1]["node_id"] == shown["leaf_node_id"] == "t12-reply"
    assert shown["active_path"] == [n["node_id"] for n in nodes]
    assert len(shown["checkpoint_ref"]) == 64
    assert shown["checkpoint"]["turn_state"]["turn"] == DEMO_TURNS
    assert len(shown["usage"]) == 2
    assert {(u["source"], u["model"]) for u in shown["usage"]} == {("turn", TURN_MODEL), ("summariser", SUMMARY_MODEL)}
    assert all(u["usage"]["input_tokens"] > 0 for u in shown["usage"])
    assert shown["blobs"]["count"] > 0 and shown["blobs"]["raw_bytes"] >= shown["blobs"]["stored_bytes"]
    assert shown["meta"]["session_name"] == "Fix the CSV tokenizer"
    assert shown["picker"]["user_message_count"] == DEMO_TURNS
    assert shown["path"].endswith(lashstore.safe_file_name("demo-session"))


def test_show_full_json(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    active = run_json(capsys, "--store", demo_store, "show", "demo-session", "--json")
    full = run_json(capsys, "--store", demo_store, "show", "demo-session", "--json", "--full")
    assert full["scope"] == "full_graph"
    assert full["active_path"] == active["active_path"]
    assert len(full["nodes"]) == full["live_node_count"] > len(active["nodes"])
    ids = {n["node_id"] for n in full["nodes"]}
    assert "t06-user" in ids and "t06-tool" not in ids


def test_show_table(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--store", demo_store, "show", "demo-session")
    assert rc == EXIT_OK
    for text in ("Session demo-session", "head revision", "Active path:", "t12-reply (leaf)", "Token usage",
                 SUMMARY_MODEL, "Blobs", "→ run_tests("):
        assert text in out, text
    rc, out, _ = run(capsys, "--store", demo_store, "show", "demo-session", "--full")
    assert rc == EXIT_OK and "Graph:" in out and "t07-reply" in out


def test_show_child(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--store", demo_store, "show", "demo-session-research")
    assert rc == EXIT_OK and "child of demo-session" in out


def test_show_session_without_commits(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    with lashstore.open(store) as dep:
        dep.sessions.create_store("fresh", model="m").close()
    shown = run_json(capsys, "--store", store, "show", "fresh", "--json")
    assert shown["head_revision"] is None and shown["nodes"] == [] and shown["usage"] == []
    assert shown["meta"]["model"] == "m"
    rc, out, _ = run(capsys, "--store", store, "show", "fresh")
    assert rc == EXIT_OK and "no commit yet" in out


def test_show_unknown_session_exits_3(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "--store", demo_store, "show", "no-such-session")
    assert rc == EXIT_NOT_FOUND == 3
    assert out == ""
    assert "no session 'no-such-session'" in err and "lashstore sessions" in err
    rc, _, err = run(capsys, "--store", demo_store, "show", "no-such-session", "--json")
    assert rc == EXIT_NOT_FOUND


def test_show_unreadable_session_exits_1(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    Path(store).mkdir()
    (Path(store) / lashstore.safe_file_name("broken")).write_bytes(b"\x00garbage" * 100)
    rc, out, err = run(capsys, "--store", store, "show", "broken")
    assert rc == EXIT_ERROR == 1
    assert err.startswith("error: ") and "not a database" in err


def test_errors_are_red(store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    rc, _, err = run(capsys, "--store", store, "show", "nothing")
    assert rc == EXIT_NOT_FOUND
    assert "\x1b[1;31m" in err  # bold red


# -- options, help, usage -----------------------------------------------------------------------


def test_store_from_env_and_after_the_command(
    demo_store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert len(run_json(capsys, "sessions", "--json", "--store", demo_store)) == 2
    monkeypatch.setenv("LASHSTORE_URL", demo_store)
    assert len(run_json(capsys, "sessions", "--json")) == 2
    # --store beats the environment, before or after the command.
    other = str(tmp_path / "other")
    assert run_json(capsys, "--store", other, "sessions", "--json") == []
    assert run_json(capsys, "sessions", "--store", other, "--json") == []


def test_default_store_is_dot_lashstore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "demo", "--turns", "2")
    assert rc == EXIT_OK, err
    assert (tmp_path / ".lashstore" / lashstore.safe_file_name("demo-session")).is_file()


@pytest.mark.parametrize("command", [[], ["demo"], ["sessions"], ["show"], ["queue"], ["processes"], ["process"], ["triggers"], ["effects"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, *command, "--help")
    assert rc == EXIT_OK
    assert out.startswith("usage: lashstore")
    assert "examples:" in out and "--store URL" in out


def test_help_lists_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--help")
    assert "exit status: 0 ok, 1 error reported by lashstore, 2 usage error, 3 session or process not found" in out
    for command in ("demo", "sessions", "show"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["demo", "--turns", "0"],
        ["demo", "--turns", "many"],
        ["show"],
        ["sessions", "--nope"],
        ["--store", "ftp://x", "sessions"],
        ["--store", "sqlite:///dir?frobnicate=1", "sessions"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == EXIT_USAGE == 2
    assert err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--version")
    assert rc == EXIT_OK and lashstore.__version__ in out


# -- the boundary and the real command ----------------------------------------------------------


def test_import_lashstore_does_not_import_rich() -> None:
    subprocess.run(
        [sys.executable, "-c", "import lashstore, sys; assert 'rich' not in sys.modules"],
        check=True,
    )


def test_rich_is_imported_only_inside_the_cli_package() -> None:
    src = Path(lashstore.__file__).parent
    offenders = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.relative_to(src).parts[0] != "cli"
        and any(
            line.lstrip().startswith(("import rich", "from rich"))
            for line in p.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []


def _console_script() -> str:
    beside = Path(sys.executable).parent / "lashstore"
    found = str(beside) if beside.exists() else shutil.which("lashstore")
    if found is None:
        pytest.skip("the lashstore console script is not installed")
    return found


def test_console_script(tmp_path: Path) -> None:
    script = _console_script()
    url = str(tmp_path / "store")
    env = {k: v for k, v in os.environ.items() if k not in ("LASHSTORE_URL", "FORCE_COLOR")}

    def lash(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, "--store", url, *argv], capture_output=True, text=True, env=env, timeout=120)

    done = lash("demo")
    assert done.returncode == 0, done.stderr
    assert "demo-session" in done.stdout and SUMMARY_MODEL in done.stdout

    done = lash("sessions", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 2 and all(r["error"] is None for r in rows)

    done = lash("show", "demo-session", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["head_revision"] == expected_head(DEMO_TURNS)
    assert shown["nodes"] and len({u["model"] for u in shown["usage"]}) == 2

    done = lash("show", "missing")
    assert done.returncode == 3 and "no session 'missing'" in done.stderr and done.stdout == ""

    done = lash("demo", "--turns", "-1")
    assert done.returncode == 2 and "--turns" in done.stderr


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lashstore.cli", "--store", str(tmp_path), "sessions", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_queue_lists_pending_and_claimed_work(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, "--store", demo_store, "queue", "demo-session", "--json")
    assert isinstance(report, dict)
    assert [b["items"][0]["payload"]["content"] for b in report["pending"]] == [
        "Thanks! Once CI is green, bump the version to 1.4.1."
    ]
    assert report["claimed"] == []
    # Claim it as a runtime would, and the listing moves it to claimed with its owner.
    dep = lashstore.open(demo_store)
    try:
        store = dep.sessions.open_store("demo-session")
        claim = store.claim_ready_queued_work("demo-session", "worker-7", lashstore.ClaimBoundary.IDLE, 60_000, 5)
        assert claim is not None
        store.close()
    finally:
        dep.close()
    report = run_json(capsys, "--store", demo_store, "queue", "demo-session", "--json")
    assert report["pending"] == [] and [c["owner_id"] for c in report["claimed"]] == ["worker-7"]
    code, out, _ = run(capsys, "--store", demo_store, "queue", "demo-session")
    assert code == EXIT_OK and "claimed by worker-7" in out
    shown = run_json(capsys, "--store", demo_store, "show", "demo-session", "--json")
    assert [c["claim_id"] for c in shown["queue"]["claimed"]] == [claim.claim_id]


def test_queue_of_unknown_session_exits_3(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--store", demo_store, "queue", "nope")
    assert code == EXIT_NOT_FOUND and "nope" in err


def test_processes_and_process(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", store, "processes")
    assert code == EXIT_OK and "no processes" in out
    assert not Path(store).exists()  # looking does not create the store
    dep = lashstore.open(store)
    try:
        reg = dep.processes
        reg.register_process(lashstore.ProcessRegistration(id="build-42", input={"cmd": "make"}))
        reg.register_process(lashstore.ProcessRegistration(id="done-1"))
        reg.complete_process("done-1", lashstore.AwaitSuccess(value={"ok": True}))
        reg.claim_process_lease("build-42", "worker-a", 60_000)
    finally:
        dep.close()
    rows = run_json(capsys, "--store", store, "processes", "--json")
    assert [(r["process"]["id"], r["process"]["status"]["state"]) for r in rows] == [
        ("build-42", "running"),
        ("done-1", "completed"),
    ]
    assert rows[0]["lease"]["owner_id"] == "worker-a" and rows[1]["lease"] is None
    running = run_json(capsys, "--store", store, "processes", "--status", "running", "--json")
    assert [r["process"]["id"] for r in running] == ["build-42"]
    code, out, _ = run(capsys, "--store", store, "processes")
    assert code == EXIT_OK and "worker-a" in out and "build-42" in out
    shown = run_json(capsys, "--store", store, "process", "done-1", "--json")
    assert [e["event_type"] for e in shown["events"]] == ["process.completed"]
    code, out, _ = run(capsys, "--store", store, "process", "done-1")
    assert code == EXIT_OK and "process.completed" in out
    code, _, err = run(capsys, "--store", store, "process", "nope")
    assert code == EXIT_NOT_FOUND and "nope" in err


def test_triggers_and_effects(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("triggers", "effects"):
        code, out, _ = run(capsys, "--store", store, command)
        assert code == EXIT_OK and "no " in out
    assert not Path(store).exists()
    dep = lashstore.open(store)
    try:
        he = dep.host_events
        sub = he.register_subscription(
            lashstore.TriggerSubscriptionDraft(session_id="chat-42", source_type="button", source_key="blue", name="deploy")
        )
        occ = he.record_occurrence(
            lashstore.HostEventOccurrenceRequest(source_type="button", source_key="blue", payload={"n": 1}, idempotency_key="press-1")
        )
        assert len(he.reserve_matching_deliveries(occ.occurrence_id)) == 1
        fx = dep.effects
        fx.execute(("turn", "t1"), "weather:paris", {"city": "paris"}, lambda: {"temp_c": 21})
    finally:
        dep.close()
    report = run_json(capsys, "--store", store, "triggers", "--occurrences", "5", "--json")
    assert [s["handle"] for s in report["subscriptions"]] == [sub.handle]
    assert [o["idempotency_key"] for o in report["occurrences"]] == ["press-1"]
    assert len(report["deliveries"]) == 1
    code, out, _ = run(capsys, "--store", store, "triggers", "--occurrences", "5")
    assert code == EXIT_OK and sub.handle in out and "press-1" in out
    effects = run_json(capsys, "--store", store, "effects", "--json")
    assert [(e["replay_key"], e["status"], e["outcome"]) for e in effects] == [("weather:paris", "completed", {"temp_c": 21})]
    code, out, _ = run(capsys, "--store", store, "effects")
    assert code == EXIT_OK and "weather:paris" in out


def test_deployment_delete_session_cleans_every_store(store: str) -> None:
    with lashstore.open(store) as dep:
        dep.sessions.create_store("gone").close()
        reg = dep.processes
        reg.register_process(lashstore.ProcessRegistration(id="job"))
        reg.grant_handle(lashstore.ProcessScope("gone"), "job", lashstore.ProcessHandleDescriptor())
        dep.host_events.register_subscription(
            lashstore.TriggerSubscriptionDraft(session_id="gone", source_type="cron", source_key="hourly")
        )
        report = dep.delete_session("gone")
        assert report.cancel_process_ids == ["job"]
        assert not dep.sessions.has_session("gone")
        subs = dep.host_events.list_subscriptions(lashstore.TriggerSubscriptionFilter(session_id="gone"))
        assert [s.enabled for s in subs] == [False]


def test_a_conninfo_string_is_not_taken_for_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(lashstore.ValidationError, match="postgresql://"):
        lashstore.open("user=postgres dbname=test host=127.0.0.1")
    assert list(tmp_path.iterdir()) == []
