"""`lashstore demo`: write a scripted agent session through the public API, then show what is stored.

The script is a coding agent fixing a CSV tokenizer. Every turn is one `commit_runtime_state`
with compare-and-swap and a turn stamp, the way a runtime commits. Along the way the user edits an
earlier message (a branch), a tool output that leaked a secret is tombstoned, a sub-agent runs in
a child session, and a summariser spends tokens on a second model.
"""

from __future__ import annotations

import argparse
import datetime
import random
import shlex
from dataclasses import dataclass, field
from typing import Any

import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..deployment import Deployment
from ..model.queue import (
    QUEUED_WORK_CLAIM_TTL_MS,
    ClaimBoundary,
    DeliveryPolicy,
    QueuedWorkBatchDraft,
    SlotPolicy,
)
from ..model.session import (
    ActivePath,
    ChildRelation,
    FullGraph,
    GraphAppend,
    GraphNode,
    HydratedSessionCheckpoint,
    RuntimeCommit,
    TokenLedgerEntry,
    TokenUsage,
)
from . import render
from .queue import load_queue, queue_table
from .common import EXIT_OK, default_store_url, open_deployment, session_file, store_directory

__all__ = ["add_parser", "run", "DemoResult", "write_demo"]

TURN_MODEL = "gpt-5.4-mini"
SUMMARY_MODEL = "gpt-5.4-nano"
CHILD_TURNS = 2
FRAME = "main"
CWD = "/home/dev/csvkit-lite"

EPILOG = """\
examples:
  lashstore demo                          # 12 turns into ./.lashstore (or $LASHSTORE_URL)
  lashstore --store /tmp/demo-store demo  # somewhere else
  lashstore demo --turns 30 --session big-demo
  lashstore show demo-session --full      # then look at it

Re-running replaces the demo session and its child; other sessions are left alone.
"""


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        parents=parents,
        help="write a scripted multi-turn agent session and show what is stored",
        description="Write a scripted multi-turn agent session (with a branch, a tombstone, a child "
        "session and usage for two models) into the store, then print what is stored.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--turns", type=_positive_int, default=12, metavar="N", help="turns to write (default: 12)")
    p.add_argument("--session", default="demo-session", metavar="ID", help="session id (default: demo-session)")
    p.set_defaults(handler=run)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


# -- the script ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    user: str
    tool: str
    args: dict[str, Any]
    output: str
    reply: str


TOKENIZER_SRC = '''\
"""Split one CSV line into fields."""

from __future__ import annotations


def split_fields(line: str, delimiter: str = ",", quote: str = '"') -> list[str]:
    fields: list[str] = []
    current: list[str] = []
    in_quotes = False
    for ch in line:
        if ch == delimiter:
            fields.append("".join(current))
            current = []
        elif ch == quote:
            in_quotes = not in_quotes
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields


def parse(text: str, **dialect: str) -> list[list[str]]:
    return [split_fields(line, **dialect) for line in text.splitlines() if line]
'''

PYTEST_FAIL = '''\
============================= test session starts ==============================
platform linux -- Python 3.12.4, pytest-8.3.2, pluggy-1.5.0
rootdir: /home/dev/csvkit-lite
collected 23 items

tests/test_parser.py .........FF............                            [100%]

=================================== FAILURES ===================================
_________________________ test_quoted_comma_is_one_field _______________________

    def test_quoted_comma_is_one_field():
>       assert parse('a,"b,c",d') == [["a", "b,c", "d"]]
E       AssertionError: assert [['a', 'b', 'c', 'd']] == [['a', 'b,c', 'd']]
E         At index 0 diff: ['a', 'b', 'c', 'd'] != ['a', 'b,c', 'd']

tests/test_parser.py:41: AssertionError
_________________________ test_escaped_quote_inside_field ______________________

    def test_escaped_quote_inside_field():
>       assert parse('"say ""hi""",x') == [['say "hi"', "x"]]
E       AssertionError: assert [['say hi', 'x']] == [['say "hi"', 'x']]

tests/test_parser.py:47: AssertionError
=========================== short test summary info ============================
FAILED tests/test_parser.py::test_quoted_comma_is_one_field - AssertionError
FAILED tests/test_parser.py::test_escaped_quote_inside_field - AssertionError
========================= 2 failed, 21 passed in 0.41s =========================
'''

PATCH = '''\
@@ def split_fields(line: str, delimiter: str = ",", quote: str = '"') -> list[str]:
-    for ch in line:
-        if ch == delimiter:
+    i = 0
+    while i < len(line):
+        ch = line[i]
+        if ch == quote and in_quotes and line[i + 1 : i + 2] == quote:
+            current.append(quote)  # "" inside quotes is one literal quote
+            i += 1
+        elif ch == delimiter and not in_quotes:
             fields.append("".join(current))
             current = []
         elif ch == quote:
             in_quotes = not in_quotes
         else:
             current.append(ch)
+        i += 1
'''

STEPS: list[Step] = [
    Step(
        "The nightly build is red again, something in tests/test_parser.py. Can you take a look?",
        "run_tests",
        {"path": "tests/test_parser.py"},
        PYTEST_FAIL,
        "Two tests fail, both on quoted fields: `a,\"b,c\",d` is split into four fields, and a doubled "
        "quote inside a quoted field loses its quotes. The tokenizer treats every comma as a delimiter, "
        "even inside quotes. I'll read it next.",
    ),
    Step(
        "Show me the tokenizer.",
        "read_file",
        {"path": "src/csvkit_lite/tokenizer.py"},
        TOKENIZER_SRC,
        "`split_fields` toggles `in_quotes` but never checks it when it sees a delimiter, and it has no "
        "notion of the `\"\"` escape. Both failures come from that loop.",
    ),
    Step(
        "Fix the tokenizer so quoted commas and doubled quotes survive.",
        "edit_file",
        {"path": "src/csvkit_lite/tokenizer.py", "patch": PATCH},
        "applied 1 hunk to src/csvkit_lite/tokenizer.py (+8 -2)",
        "Done: delimiters only split outside quotes now, and `\"\"` inside a quoted field becomes one "
        "literal quote. The loop walks by index so it can look one character ahead.",
    ),
    Step(
        "Run the whole test suite now.",
        "run_tests",
        {"path": "tests"},
        PYTEST_FAIL.replace("collected 23 items", "collected 148 items")
        .split("=================================== FAILURES")[0]
        .replace(".........FF............", "..........................")
        + "============================= 148 passed in 1.93s ==============================\n",
        "All 148 tests pass, including the two that failed this morning.",
    ),
    Step(
        "Add a regression test for a quoted field that ends the line.",
        "edit_file",
        {
            "path": "tests/test_parser.py",
            "patch": "+def test_quoted_field_at_end_of_line():\n"
            "+    assert parse('x,\"y,z\"') == [[\"x\", \"y,z\"]]\n",
        },
        "applied 1 hunk to tests/test_parser.py (+3 -0)",
        "Added `test_quoted_field_at_end_of_line`; it passes with the new tokenizer.",
    ),
    Step(
        "Run ruff and mypy on the package.",
        "shell",
        {"command": "ruff check src tests && mypy src"},
        "All checks passed!\nSuccess: no issues found in 7 source files\n",
        "ruff and mypy are both clean.",
    ),
    Step(
        "Add a line to the changelog.",
        "edit_file",
        {"path": "CHANGELOG.md", "patch": "+- Quoted fields may contain the delimiter and doubled quotes (#212).\n"},
        "applied 1 hunk to CHANGELOG.md (+1 -0)",
        "Changelog updated under *Unreleased*, referencing issue #212.",
    ),
    Step(
        "Write the PR description.",
        "shell",
        {"command": "git diff --stat main"},
        " CHANGELOG.md                  |  1 +\n src/csvkit_lite/tokenizer.py  | 12 ++++++++----\n"
        " tests/test_parser.py          |  3 +++\n 3 files changed, 12 insertions(+), 4 deletions(-)\n",
        "**Fix quoted delimiters in the tokenizer** - delimiters inside quotes no longer split a field, "
        "and `\"\"` inside quotes is read as one quote (RFC 4180). Adds a regression test. Fixes #212.",
    ),
    Step(
        "Open the PR against main.",
        "shell",
        {"command": "gh pr create --base main --fill"},
        "https://github.com/example/csvkit-lite/pull/213\n",
        "Opened https://github.com/example/csvkit-lite/pull/213. CI is running.",
    ),
    Step(
        "Check CI on the PR.",
        "shell",
        {"command": "gh pr checks 213"},
        "lint\tpass\t31s\ntests (3.11)\tpass\t1m2s\ntests (3.12)\tpass\t58s\n",
        "All three checks pass: lint and the test matrix on 3.11 and 3.12.",
    ),
]

SPAWN = Step(
    "While you fix it, have a sub-agent check how other CSV libraries treat escaped quotes.",
    "spawn_agent",
    {"agent": "researcher", "task": "Survey how csv, pandas and polars parse doubled quotes inside quoted fields."},
    "",  # filled in with the child's id
    "A researcher sub-agent is on it in its own session; I'll fold its findings into the fix.",
)

LEAK = Step(
    "Print the config you are loading so I can check the dialect settings.",
    "read_file",
    {"path": ".env"},
    "CSV_DELIMITER=,\nCSV_QUOTECHAR=\"\nCSV_STRICT=true\n"
    "OPENAI_API_KEY=sk-demo-9f2c4e1b7a6d4c3e8b5f0a1d2e3c4b5a  # not a real key\n",
    "The dialect is `,` with `\"` as the quote character, strict mode on. (That file also holds an "
    "API key; you may want it out of the transcript.)",
)

EDITED = Step(
    "Print only the dialect settings from settings.toml, not the .env file.",
    "read_file",
    {"path": "settings.toml"},
    "[dialect]\ndelimiter = \",\"\nquotechar = '\"'\nstrict = true\ndoublequote = true\n",
    "settings.toml sets delimiter `,`, quotechar `\"`, strict mode, and `doublequote = true` - which "
    "is exactly the escape rule the tokenizer now implements.",
)

CHILD_STEPS = [
    Step(
        "Survey how csv, pandas and polars parse doubled quotes inside quoted fields.",
        "web_search",
        {"query": "RFC 4180 doubled quote escape csv module doublequote pandas polars"},
        "RFC 4180 §2.7: a double quote inside a quoted field is escaped by preceding it with another "
        "double quote.\nPython csv: Dialect.doublequote=True (default) reads \"\" as \".\n"
        "pandas.read_csv: doublequote=True by default, delegates to the C tokenizer.\n"
        "polars.read_csv: follows RFC 4180; quote_char configurable, no escapechar.\n",
        "All three follow RFC 4180: `\"\"` inside a quoted field is one literal quote; Python's csv "
        "exposes it as `Dialect.doublequote` (default on).",
    ),
    Step(
        "Summarise for the parent agent in two sentences.",
        "report",
        {"to": "parent"},
        "delivered",
        "Treat `\"\"` inside quotes as a literal quote and never split on delimiters inside quotes; "
        "that matches RFC 4180, Python's csv, pandas and polars.",
    ),
]


@dataclass
class Plan:
    """Which turn does what; the special turns move with --turns."""

    turns: int
    spawn_turn: int
    edit_turn: int | None  # the turn whose user message is edited
    branch_turn: int | None  # the turn that carries the edit

    @classmethod
    def for_turns(cls, turns: int) -> "Plan":
        spawn = min(3, turns)
        if turns < 4:
            return cls(turns, spawn, None, None)
        branch = max(4, turns * 2 // 3)
        edit = branch - 2 if branch - 2 != spawn else branch - 1
        return cls(turns, spawn, edit, branch)

    def step(self, turn: int, generic_index: int) -> tuple[Step, bool]:
        """The turn's step and whether it used up a generic step."""
        if turn == self.spawn_turn:
            return SPAWN, False
        if turn == self.edit_turn:
            return LEAK, False
        if turn == self.branch_turn:
            return EDITED, False
        return STEPS[generic_index % len(STEPS)], True


# -- writing ------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    session_id: str
    child_session_id: str
    turns: int
    child_turns: int
    head_revision: int
    tombstoned: list[str] = field(default_factory=list)
    branch: tuple[int, int] | None = None  # (turn carrying the edit, turn edited)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _Agent:
    """Turns of one session: builds nodes, checkpoints and usage, commits with CAS and a stamp."""

    def __init__(self, store: Any, session_id: str, prefix: str, seed: int) -> None:
        self.store = store
        self.sid = session_id
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.head = 0
        self.leaf: str | None = None
        self.context = 1800  # system prompt and tool schemas
        self.prev_context = 0
        self.files: dict[str, str] = {}
        self.history: list[dict[str, Any]] = []
        self.plugin_rev = 0
        self.plugin_ref: str | None = None
        self.facts: list[str] = []
        self.cells: list[str] = []

    def turn(self, i: int, step: Step, *, parent: str | None, summarise: bool) -> RuntimeCommit:
        p = f"{self.prefix}t{i:02d}"
        # The user's message arrives as queued work; the turn claims it and its commit completes
        # the claim, so the message is consumed exactly when the turn becomes durable.
        self.store.enqueue_queued_work(user_message_draft(self.sid, step.user, f"{p}-user"))
        claim = self.store.claim_ready_queued_work(self.sid, "demo-runtime", ClaimBoundary.IDLE, QUEUED_WORK_CLAIM_TTL_MS, 1)
        call_id = f"call_{self.rng.getrandbits(48):012x}"
        ts = _now_iso()
        args = msgspec.json.encode(step.args).decode()
        nodes = [
            GraphNode(node_id=f"{p}-user", parent_node_id=parent, agent_frame_id=FRAME, timestamp=ts,
                      payload={"role": "user", "content": step.user}),
            GraphNode(node_id=f"{p}-call", parent_node_id=f"{p}-user", agent_frame_id=FRAME, timestamp=ts,
                      payload={"role": "assistant", "content": "", "tool_calls": [
                          {"id": call_id, "type": "function", "function": {"name": step.tool, "arguments": args}}]}),
            GraphNode(node_id=f"{p}-tool", parent_node_id=f"{p}-call", agent_frame_id=FRAME, timestamp=ts,
                      caused_by={"tool_call_id": call_id},
                      payload={"role": "tool", "tool_call_id": call_id, "name": step.tool, "content": step.output}),
            GraphNode(node_id=f"{p}-reply", parent_node_id=f"{p}-tool", agent_frame_id=FRAME, timestamp=ts,
                      payload={"role": "assistant", "content": step.reply}),
        ]
        leaf = nodes[-1].node_id

        # Two model calls (the tool call, then the reply); the ledger merges them per (source, model).
        usage: list[TokenLedgerEntry] = []
        for out_text in (args, step.reply):
            self.context += _tokens(step.user) if out_text is args else _tokens(step.output)
            cached = (self.prev_context // 128) * 128
            usage.append(TokenLedgerEntry("turn", TURN_MODEL, TokenUsage(
                input_tokens=self.context,
                cached_input_tokens=min(cached, self.context),
                output_tokens=_tokens(out_text) + self.rng.randint(5, 40),
                reasoning_tokens=self.rng.choice((0, 64, 128, 256, 384)),
            )))
            self.prev_context = self.context
            self.context += _tokens(out_text)
        if summarise:
            usage.append(TokenLedgerEntry("summariser", SUMMARY_MODEL, TokenUsage(
                input_tokens=self.context, output_tokens=self.rng.randint(90, 160))))

        # Tool state grows with every tool output; the generation counter changes every turn.
        if step.tool == "read_file":
            self.files[step.args["path"]] = step.output
        self.history.append({"turn": i, "tool": step.tool, "args": step.args, "output": step.output})
        tool_state = {
            "generation": i,
            "cwd": CWD,
            "open_files": dict(self.files),
            # A runtime keeps a bounded window of recent tool calls, so the state stays the same
            # size however long the session runs.
            "history": self.history[-HISTORY_WINDOW:],
        }
        # The memory plugin writes a new snapshot every third turn; in between its ref passes through.
        plugin_snapshot = None
        if self.plugin_ref is None or i % 3 == 0:
            self.plugin_rev += 1
            self.facts.append(f"turn {i}: {step.reply[:80]}")
            plugin_snapshot = {"plugin": "memory", "revision": self.plugin_rev, "facts": self.facts[-HISTORY_WINDOW:]}
        self.cells.append(f"# turn {i}\nresult = tools.{step.tool}(**{step.args!r})\n")
        execution_state = msgspec.msgpack.encode(
            {"runtime": "python-repl", "step": i, "cells": self.cells[-HISTORY_WINDOW:], "globals": {"result_len": len(step.output)}}
        )
        commit = RuntimeCommit(
            session_id=self.sid,
            expected_head_revision=self.head,
            config={"model": TURN_MODEL, "temperature": 0.2, "tools": ["run_tests", "read_file", "edit_file",
                                                                     "shell", "spawn_agent"]},
            agent_frames=[{"frame_id": FRAME, "agent": "coder", "parent_frame_id": None}],
            current_agent_frame_id=FRAME,
            graph=GraphAppend(nodes, leaf),
            checkpoint=HydratedSessionCheckpoint(
                turn_state={"turn": i, "phase": "awaiting_user", "last_tool": step.tool, "leaf": leaf},
                tool_state=tool_state,
                plugin_snapshot=plugin_snapshot,
                plugin_snapshot_ref=None if plugin_snapshot is not None else self.plugin_ref,
                plugin_snapshot_revision=self.plugin_rev,
                execution_state=execution_state,
            ),
            usage_deltas=usage,
        ).with_turn_commit(f"turn-{i}")
        if claim is not None:
            commit = commit.completing_queue_claim(claim.completion())
        result = self.store.commit_runtime_state(commit)
        self.head = result.head_revision
        self.plugin_ref = result.manifest.plugin_snapshot_ref
        self.leaf = leaf
        return commit

    def snapshot(self) -> tuple[Any, ...]:
        return (self.context, self.prev_context, dict(self.files), list(self.history), list(self.cells))

    def restore(self, snap: tuple[Any, ...]) -> None:
        """Back to the state after an earlier turn, as a runtime does when the user branches there."""
        self.context, self.prev_context, files, history, cells = snap
        self.files, self.history, self.cells = dict(files), list(history), list(cells)

    def reload_head(self) -> None:
        """What a runtime does after someone else changed the session: read the head again."""
        head = self.store.load_head()
        self.head = head.head_revision if head else 0


#: Tool calls, memory facts and REPL cells a checkpoint keeps (the demo's state stays bounded).
HISTORY_WINDOW = 24


def user_message_draft(session_id: str, text: str, source: str) -> QueuedWorkBatchDraft:
    return QueuedWorkBatchDraft(
        session_id=session_id,
        payloads=[{"type": "turn_input", "role": "user", "content": text}],
        delivery_policy=DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT,
        slot_policy=SlotPolicy.JOIN,
        merge_key="user-messages",
        source_key=f"message:{source}",
    )


FOLLOW_UP = "Thanks! Once CI is green, bump the version to 1.4.1."


def write_demo(dep: Deployment, session_id: str, turns: int, progress: Progress | None = None) -> DemoResult:
    factory = dep.sessions
    child_id = f"{session_id}-research"
    factory.delete_session(child_id)
    factory.delete_session(session_id)
    plan = Plan.for_turns(turns)
    result = DemoResult(session_id, child_id, turns, CHILD_TURNS, 0)
    task = progress.add_task("writing turns", total=turns + CHILD_TURNS) if progress is not None else None

    def advance() -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    store = factory.create_store(session_id, model=TURN_MODEL, cwd=CWD, session_name="Fix the CSV tokenizer")
    try:
        agent = _Agent(store, session_id, "", seed=1)
        reply_of: dict[int, str] = {}  # turn -> its reply node
        state_after: dict[int, tuple[Any, ...]] = {0: agent.snapshot()}
        generic = 0
        for i in range(1, turns + 1):
            step, used = plan.step(i, generic)
            generic += used
            parent = agent.leaf
            if i == plan.branch_turn and plan.edit_turn is not None:
                # The user edited turn `edit_turn`'s message: a sibling under that message's parent,
                # and the agent's context and tool state go back to what they were there.
                parent = reply_of.get(plan.edit_turn - 1)
                agent.restore(state_after[plan.edit_turn - 1])
            if step is SPAWN:
                step = Step(step.user, step.tool, step.args, f"spawned session {child_id!r}", step.reply)
            agent.turn(i, step, parent=parent, summarise=(i % 3 == 0 or i == turns))
            reply_of[i] = agent.leaf  # type: ignore[assignment]
            state_after[i] = agent.snapshot()
            advance()
            if step.tool == "spawn_agent":
                _write_child(factory, session_id, child_id, f"t{i:02d}-call", advance)
            if i == plan.branch_turn and plan.edit_turn is not None:
                result.branch = (i, plan.edit_turn)
                leaked = f"t{plan.edit_turn:02d}-tool"
                if store.tombstone_nodes([leaked]):
                    result.tombstoned.append(leaked)
                agent.reload_head()
        result.head_revision = agent.head
        # A message the user sent after the last turn: queued, not yet claimed by any turn.
        store.enqueue_queued_work(user_message_draft(session_id, FOLLOW_UP, "follow-up"))
    finally:
        store.close()
    return result


def _write_child(factory: Any, parent_id: str, child_id: str, spawned_by: str, advance: Any) -> None:
    store = factory.create_store(
        child_id,
        model=TURN_MODEL,
        cwd=CWD,
        session_name="Research: CSV quote escaping",
        relation=ChildRelation(parent_session_id=parent_id, caused_by={"node_id": spawned_by}),
    )
    try:
        agent = _Agent(store, child_id, "r", seed=2)
        for i, step in enumerate(CHILD_STEPS, 1):
            agent.turn(i, step, parent=agent.leaf, summarise=False)
            advance()
    finally:
        store.close()


# -- the command --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    console = render.out()
    with open_deployment(args.store) as dep:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            result = write_demo(dep, args.session, args.turns, progress)
        _report(console, dep, args.store, result)
    return EXIT_OK


def _report(console: Any, dep: Deployment, url: str, result: DemoResult) -> None:
    sid = result.session_id
    console.print()
    line = Text("Wrote ", style="bold green")
    line.append(f"{sid!r}", style="bold cyan")
    line.append(f": {result.turns} turns", style="bold green")
    if result.branch:
        line.append(", 1 branch", style="bold green")
    line.append(f", {len(result.tombstoned)} tombstone{'s' * (len(result.tombstoned) != 1)}", style="bold green")
    if not result.branch:
        line.append(" (the branch and the tombstone need --turns 4 or more)", style="yellow")
    line.append("; child session ", style="bold green")
    line.append(f"{result.child_session_id!r}", style="bold cyan")
    line.append(f": {result.child_turns} turns", style="bold green")
    console.print(line)
    console.print()

    console.print(render.sessions_table(dep.sessions.list_sessions(), title="Sessions", width=console.width))
    console.print()

    store = dep.sessions.open_store(sid)
    try:
        read = store.load_session(ActivePath())
        full = store.load_session(FullGraph())
        usage = store.load_usage()
        stats = store.blob_stats()
        queue = load_queue(store, sid)
    finally:
        store.close()
    child = dep.sessions.open_store(result.child_session_id)
    try:
        child_stats = child.blob_stats()
    finally:
        child.close()
    assert read is not None and full is not None

    bumps = len(result.tombstoned)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("head revision", Text(
        f"{read.head_revision}  ({result.turns} turn commits"
        + (f" + {bumps} tombstone bump{'s' * (bumps != 1)})" if bumps else ")")))
    head.add_row("checkpoint", Text(read.checkpoint_ref or "-"))
    head.add_row("leaf", Text(read.graph.leaf_node_id or "-"))
    if result.branch:
        b, e = result.branch
        head.add_row("branch", Text(
            f"turn {b} edits the user message of turn {e}; turns {e}..{b - 1} stay in the graph, off the active path"))
    for nid in result.tombstoned:
        head.add_row("tombstoned", Text(f"{nid} (a tool output that printed an API key)"))
    if read.checkpoint is not None:
        cp = read.checkpoint
        gen = cp.tool_state.get("generation") if type(cp.tool_state) is dict else None
        head.add_row("checkpoint state", Text(
            f"tool_state generation {gen}, plugin snapshot revision {cp.plugin_snapshot_revision}, "
            f"execution state {len(cp.execution_state or b'')} bytes"))
    console.print(Text(f"Session {sid}", style="bold underline"))
    console.print(head)
    console.print()

    console.print(render.nodes_table(
        read.graph.nodes,
        title=f"Active path: {len(read.graph.nodes)} of {len(full.graph.nodes)} live nodes",
        leaf=read.graph.leaf_node_id,
    ))
    console.print()
    console.print(render.usage_table(usage, title=f"Token usage of {sid}"))
    console.print()
    console.print(Text(
        f"Every user message arrived as queued work, was claimed by its turn and consumed by the turn's "
        f"commit; {len(queue.pending)} still waits:", style="dim"))
    console.print(queue_table(queue))
    console.print()
    console.print(render.blob_table([(sid, stats), (result.child_session_id, child_stats)],
                                    title="Blobs (content-addressed, zstd when compressible and >= 4 KiB)"))
    console.print()

    where = Table.grid(padding=(0, 2))
    where.add_column(style="bold")
    where.add_column()
    where.add_row("store URL", Text(url))
    directory = store_directory(dep)
    if directory is not None:
        where.add_row("directory", Text(str(directory)))
        for s in (sid, result.child_session_id):
            path = session_file(dep, s)
            size = path.stat().st_size if path is not None and path.exists() else 0
            where.add_row("file", Text(f"{path}  ({render.human_bytes(size)})"))
    else:
        where.add_row("note", Text("a memory:// store lives in this process only; nothing was kept"))
    console.print(where)
    if directory is None:
        return
    console.print()
    store_opt = "" if url == default_store_url() else f"--store {shlex.quote(url)} "
    console.print(Text("next:", style="dim"))
    console.print(Text(f"  lashstore {store_opt}sessions", style="dim"), soft_wrap=True)
    console.print(Text(f"  lashstore {store_opt}show {shlex.quote(sid)} --full", style="dim"), soft_wrap=True)
    console.print(Text(f"  lashstore {store_opt}queue {shlex.quote(sid)}", style="dim"), soft_wrap=True)
