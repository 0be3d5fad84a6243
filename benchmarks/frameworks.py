"""Framework adapters against the frameworks' own SQLite stores, on the agent-turn workload.

Run:  .venv/bin/python benchmarks/frameworks.py                      # 100, 500, 2000 turns
      .venv/bin/python benchmarks/frameworks.py --quick              # 100, 500 turns
      .venv/bin/python benchmarks/frameworks.py --turns 200 --saver-max-turns 200
      (needs the extras: pip install -e '.[langgraph,openai-agents]')

The workload is `turn_commit.py`'s agent turn (same seeded generator): a user message of
~0.6 KB, an assistant message of ~1.5 KB with a tool call, tool state of ~8 KB that changes
every turn, a plugin snapshot of ~2 KB that changes every 10th turn, execution state of ~4 KB
of bytes that changes every turn.

LangGraph: a compiled `StateGraph` with a `messages` channel reduced by `add_messages` and
`tool_state`, `plugin_snapshot`, `execution_state` channels; two plain-Python nodes, `agent`
(appends the assistant message, and the plugin snapshot when it changed) and `tools` (writes
tool and execution state); no model. One turn is `graph.invoke({"messages": [user]}, thread)`
with the default durability, so it includes LangGraph's own work and its four checkpoint puts
and two `put_writes`. It runs once on `SqliteSaver` (langgraph-checkpoint-sqlite, one file,
WAL) and once on `LashstoreSaver` (`sqlite:///dir`), each N in fresh files, same content.

Columns: ms/turn = mean over the run; last100 = mean of the last 100 turns (growth shows here);
MB = bytes on disk (every database file and its WAL after `PRAGMA wal_checkpoint(TRUNCATE)`);
load = `graph.get_state(thread)`: cold = opening a new saver and its first call, as after a
restart (median of 3); warm = later calls on one saver (median of 5).
Both savers' final states are compared and must be equal.

SqliteSaver re-serialises and rewrites the whole message list in every checkpoint, so its
turn cost and its file grow with the history (quadratic in total). Above `--saver-max-turns`
(default 2000) its row is extrapolated, and labelled so, from the largest measured run: per-turn
time as a + b*i fitted over that run's turns, bytes as c*N + d*N^2 through the two largest
measured runs.

OpenAI Agents SDK (history only): `SQLiteSession(db_path)` against `LashstoreSession` on
`sqlite:///dir`; per turn `add_items([user])` then `add_items([assistant])` (as `Runner` does);
then `get_items()` on a newly opened session (cold: opening it and the first call, median of 3)
and on one open session (warm, median of 5), and `get_items(limit=20)`.
"""


import argparse
import asyncio
import gc
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Callable, NamedTuple, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from turn_commit import TurnSource  # noqa: E402  (the shared agent-turn workload)

WINDOW = 100

# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def db_bytes(paths: list[Path]) -> int:
    """Sum of each database file and its WAL, after a truncating checkpoint."""
    total = 0
    for path in paths:
        c = sqlite3.connect(path, isolation_level=None)
        try:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            c.close()
        wal = Path(f"{path}-wal")
        total += path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return total


def dir_dbs(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in (".db", ".sqlite"))


def fmt_mb(b: float) -> str:
    return f"{b / 1e6:,.1f}"


# ------------------------------------------------------------------------------------------------
# LangGraph
# ------------------------------------------------------------------------------------------------


class LgResult(NamedTuple):
    n: int
    ms_per_turn: float
    last_ms: float
    bytes: int
    load_cold_ms: float
    load_warm_ms: float
    times: list[float]
    state: Any
    extrapolated: bool = False


class Feed:
    """The current turn's content, for the graph's nodes to read."""

    def __init__(self, seed: int) -> None:
        self.src = TurnSource(seed)
        self.turn: Any = None

    def next(self) -> Any:
        self.turn = self.src.next()
        return self.turn


def build_graph(checkpointer: Any, feed: Feed) -> Any:
    from langchain_core.messages import AIMessage, AnyMessage
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    class AgentState(TypedDict, total=False):
        messages: Annotated[list[AnyMessage], add_messages]
        tool_state: dict
        plugin_snapshot: dict
        execution_state: bytes

    def agent(state: AgentState) -> dict:
        t = feed.turn
        a = t.asst_payload
        call = a["content"][1]
        out: dict[str, Any] = {
            "messages": [
                AIMessage(
                    content=a["content"][0]["text"],
                    id=a["id"],
                    tool_calls=[{"name": call["name"], "args": call["arguments"], "id": call["id"]}],
                    response_metadata={"model": a["model"], "stop_reason": a["stop_reason"]},
                    usage_metadata={
                        "input_tokens": a["usage"]["input_tokens"],
                        "output_tokens": a["usage"]["output_tokens"],
                        "total_tokens": a["usage"]["input_tokens"] + a["usage"]["output_tokens"],
                    },
                )
            ]
        }
        if t.plugin_snapshot is not None:
            out["plugin_snapshot"] = t.plugin_snapshot
        return out

    def tools(state: AgentState) -> dict:
        t = feed.turn
        return {"tool_state": t.tool_state, "execution_state": t.execution_state}

    g = StateGraph(AgentState)
    g.add_node("agent", agent)
    g.add_node("tools", tools)
    g.add_edge(START, "agent")
    g.add_edge("agent", "tools")
    g.add_edge("tools", END)
    return g.compile(checkpointer=checkpointer)


def user_message(t: Any) -> Any:
    from langchain_core.messages import HumanMessage

    return HumanMessage(content=t.user_payload["content"][0]["text"], id=t.user_payload["id"])


def open_sqlite_saver(path: Path) -> tuple[Any, Callable[[], None]]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver, conn.close


def open_lash_saver(path: Path) -> tuple[Any, Callable[[], None]]:
    from lashstore.integrations.langgraph import LashstoreSaver

    saver = LashstoreSaver.from_url(f"sqlite:///{path}")
    return saver, saver.close


def run_langgraph(opener: Callable[[Path], tuple[Any, Callable[[], None]]], path: Path, n: int, seed: int) -> LgResult:
    feed = Feed(seed)
    saver, close = opener(path)
    graph = build_graph(saver, feed)
    cfg = {"configurable": {"thread_id": "bench-thread"}}
    times = [0.0] * n
    pc = time.perf_counter
    gc.collect()
    for i in range(n):
        t = feed.next()
        msg = user_message(t)
        t0 = pc()
        graph.invoke({"messages": [msg]}, cfg)
        times[i] = pc() - t0
    close()
    # A newly opened saver (as after a restart: nothing cached); opening it is timed too.
    colds = []
    for _ in range(3):
        gc.collect()
        t0 = pc()
        saver, close = opener(path)
        graph = build_graph(saver, feed)
        state = graph.get_state(cfg)
        colds.append(pc() - t0)
        close()
    cold = statistics.median(colds)
    saver, close = opener(path)
    graph = build_graph(saver, feed)
    graph.get_state(cfg)
    warm = []
    for _ in range(5):
        t0 = pc()
        graph.get_state(cfg)
        warm.append(pc() - t0)
    close()
    assert len(state.values["messages"]) == 2 * n, "every turn's two messages are in the state"
    files = [path] if path.suffix == ".sqlite" else dir_dbs(path)
    return LgResult(
        n,
        1e3 * sum(times) / n,
        1e3 * sum(times[-WINDOW:]) / min(n, WINDOW),
        db_bytes(files),
        1e3 * cold,
        1e3 * statistics.median(warm),
        times,
        state.values,
    )


def extrapolate(runs: list[LgResult], n: int) -> LgResult:
    """SqliteSaver at `n` turns from its measured runs (see the module docstring)."""
    big = runs[-1]
    xs = list(range(big.n))
    ys = big.times
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    ms_turn = 1e3 * (a + b * (n - 1) / 2)
    last = 1e3 * (a + b * (n - 1 - (WINDOW - 1) / 2))
    if len(runs) >= 2:
        (n1, b1), (n2, b2) = (runs[-2].n, runs[-2].bytes), (big.n, big.bytes)
        d = (b2 / n2 - b1 / n1) / (n2 - n1)
        c = b1 / n1 - d * n1
        size = int(c * n + d * n * n)
    else:
        size = int(big.bytes * (n / big.n) ** 2)
    load_scale = n / big.n  # loading reads the whole list: linear in the history
    return LgResult(n, ms_turn, last, size, big.load_cold_ms * load_scale, big.load_warm_ms * load_scale, [], None, True)


def bench_langgraph(turns: list[int], workdir: Path, seed: int, saver_max: int) -> None:
    import langgraph.version as lgv  # type: ignore[import-not-found]

    print(f"LangGraph {getattr(lgv, '__version__', '?')}: StateGraph(messages+add_messages, tool_state, "
          "plugin_snapshot, execution_state), nodes agent -> tools, invoke per turn")
    hdr = (f"{'turns':>6} | {'saver':<14} | {'ms/turn':>8} {'last100':>8} | {'MB':>9} | "
           f"{'load cold':>9} {'warm ms':>8} | note")
    print(hdr)
    print("-" * len(hdr))
    measured: list[LgResult] = []
    # Warm-up (imports, code paths), not reported.
    run_langgraph(open_lash_saver, workdir / "warm-lash", 20, seed + 1)
    run_langgraph(open_sqlite_saver, workdir / "warm.sqlite", 20, seed + 1)
    for n in turns:
        if n <= saver_max:
            s = run_langgraph(open_sqlite_saver, workdir / f"saver-{n}.sqlite", n, seed)
            measured.append(s)
            note = ""
        else:
            s = extrapolate(measured, n)
            note = f"EXTRAPOLATED from the {measured[-1].n}-turn run"
        lash = run_langgraph(open_lash_saver, workdir / f"lash-{n}", n, seed)
        same = "" if s.state is None else ("state equal" if s.state == lash.state else "STATE DIFFERS")
        print(f"{n:>6} | {'SqliteSaver':<14} | {s.ms_per_turn:>8.2f} {s.last_ms:>8.2f} | {fmt_mb(s.bytes):>9} | "
              f"{s.load_cold_ms:>9.1f} {s.load_warm_ms:>8.1f} | {note}")
        print(f"{'':>6} | {'LashstoreSaver':<14} | {lash.ms_per_turn:>8.2f} {lash.last_ms:>8.2f} | "
              f"{fmt_mb(lash.bytes):>9} | {lash.load_cold_ms:>9.1f} {lash.load_warm_ms:>8.1f} | {same}")
        print(f"{'':>6} | {'ratio':<14} | {s.ms_per_turn / lash.ms_per_turn:>7.1f}x "
              f"{s.last_ms / lash.last_ms:>7.1f}x | {s.bytes / lash.bytes:>8.1f}x | "
              f"{s.load_cold_ms / lash.load_cold_ms:>8.1f}x {s.load_warm_ms / lash.load_warm_ms:>7.1f}x | "
              "SqliteSaver / LashstoreSaver")
        for p in (workdir / f"saver-{n}.sqlite", workdir / f"lash-{n}"):
            if n > turns[0] and p.exists():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------------
# OpenAI Agents SDK
# ------------------------------------------------------------------------------------------------


def agent_items(t: Any) -> tuple[dict, dict]:
    user = {"role": "user", "content": t.user_payload["content"][0]["text"]}
    a = t.asst_payload
    asst = {
        "id": a["id"],
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": a["content"][0]["text"], "annotations": []}],
    }
    return user, asst


class AgResult(NamedTuple):
    n: int
    add_ms: float
    last_ms: float
    bytes: int
    get_cold_ms: float
    get_warm_ms: float
    get20_ms: float
    items: list


async def run_agents(make: Callable[[], Any], files: Callable[[], list[Path]], n: int, seed: int) -> AgResult:
    src = TurnSource(seed)
    session = make()
    times = [0.0] * n
    pc = time.perf_counter
    gc.collect()
    for i in range(n):
        user, asst = agent_items(src.next())
        t0 = pc()
        await session.add_items([user])
        await session.add_items([asst])
        times[i] = pc() - t0
    session.close()
    colds = []
    for _ in range(3):
        gc.collect()
        t0 = pc()
        session = make()
        items = await session.get_items()
        colds.append(pc() - t0)
        session.close()
    cold = statistics.median(colds)
    session = make()
    warm, last20 = [], []
    for _ in range(5):
        t0 = pc()
        await session.get_items()
        warm.append(pc() - t0)
        t0 = pc()
        await session.get_items(limit=20)
        last20.append(pc() - t0)
    session.close()
    assert len(items) == 2 * n
    return AgResult(
        n, 1e3 * sum(times) / n, 1e3 * sum(times[-WINDOW:]) / min(n, WINDOW), db_bytes(files()),
        1e3 * cold, 1e3 * statistics.median(warm), 1e3 * statistics.median(last20), items,
    )


def bench_agents(turns: list[int], workdir: Path, seed: int) -> None:
    from agents import SQLiteSession

    from lashstore.integrations.openai_agents import LashstoreSession

    print()
    print("OpenAI Agents SDK sessions (history only): add_items([user]) + add_items([assistant]) per turn")
    hdr = (f"{'turns':>6} | {'session':<16} | {'add ms/turn':>11} {'last100':>8} | {'MB':>7} | "
           f"{'get cold':>8} {'warm ms':>8} {'last 20':>8} | note")
    print(hdr)
    print("-" * len(hdr))

    async def both(n: int, tag: str) -> tuple[AgResult, AgResult]:
        sp = workdir / f"agents-{tag}-{n}.db"
        ld = workdir / f"agents-lash-{tag}-{n}"
        s = await run_agents(lambda: SQLiteSession("bench", sp), lambda: [sp], n, seed)
        lash = await run_agents(lambda: LashstoreSession("bench", f"sqlite:///{ld}"), lambda: dir_dbs(ld), n, seed)
        return s, lash

    asyncio.run(both(20, "warm"))
    for n in turns:
        s, lash = asyncio.run(both(n, "run"))
        same = "items equal" if s.items == lash.items else "ITEMS DIFFER"
        print(f"{n:>6} | {'SQLiteSession':<16} | {s.add_ms:>11.3f} {s.last_ms:>8.3f} | {fmt_mb(s.bytes):>7} | "
              f"{s.get_cold_ms:>8.2f} {s.get_warm_ms:>8.2f} {s.get20_ms:>8.3f} |")
        print(f"{'':>6} | {'LashstoreSession':<16} | {lash.add_ms:>11.3f} {lash.last_ms:>8.3f} | "
              f"{fmt_mb(lash.bytes):>7} | {lash.get_cold_ms:>8.2f} {lash.get_warm_ms:>8.2f} {lash.get20_ms:>8.3f} | {same}")
        print(f"{'':>6} | {'ratio':<16} | {s.add_ms / lash.add_ms:>10.1f}x {s.last_ms / lash.last_ms:>7.1f}x | "
              f"{s.bytes / lash.bytes:>6.1f}x | {s.get_cold_ms / lash.get_cold_ms:>7.1f}x "
              f"{s.get_warm_ms / lash.get_warm_ms:>7.1f}x {s.get20_ms / lash.get20_ms:>7.1f}x | "
              "SQLiteSession / LashstoreSession")
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", default=None, help="comma-separated turn counts (default 100,500,2000)")
    ap.add_argument("--quick", action="store_true", help="100 and 500 turns")
    ap.add_argument("--saver-max-turns", type=int, default=2000,
                    help="run SqliteSaver up to this many turns; extrapolate above (default 2000)")
    ap.add_argument("--only", choices=("langgraph", "agents"), default=None)
    ap.add_argument("--dir", default=None, help="where the files go (default: a fresh temp dir)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    if args.turns:
        turns = [int(x) for x in args.turns.split(",") if x.strip()]
    else:
        turns = [100, 500] if args.quick else [100, 500, 2000]
    base = Path(args.dir) if args.dir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="lashstore-frameworks-", dir=base))
    try:
        if args.only in (None, "agents"):
            import agents

            agents.set_tracing_disabled(True)  # no trace export: nothing leaves the machine
        if args.only in (None, "langgraph"):
            bench_langgraph(turns, workdir, args.seed, args.saver_max_turns)
        if args.only in (None, "agents"):
            bench_agents(turns, workdir, args.seed)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
