"""The README's quick-start: one turn committed, retried, read back, and a stale write refused."""

import lashstore
from lashstore import (
    ActivePath,
    GraphAppend,
    GraphNode,
    HeadRevisionConflict,
    HydratedSessionCheckpoint,
    RuntimeCommit,
    TokenLedgerEntry,
    TokenUsage,
)

with lashstore.open("sqlite:///agent-store") as deployment:
    store = deployment.sessions.create_store("chat-42", model="gpt-5.4-mini")

    turn = RuntimeCommit(
        session_id="chat-42",
        expected_head_revision=0,  # compare-and-swap: the revision this turn started from
        config={"model": "gpt-5.4-mini"},
        graph=GraphAppend(
            [
                GraphNode(node_id="u1", payload={"role": "user", "content": "What is 2 + 2?"}),
                GraphNode(node_id="a1", parent_node_id="u1", payload={"role": "assistant", "content": "4"}),
            ],
            leaf_node_id="a1",
        ),
        checkpoint=HydratedSessionCheckpoint(
            turn_state={"turn": 1},
            tool_state={"calculator": {"calls": 1}},
            execution_state=b"\x00repl-state",
        ),
        usage_deltas=[TokenLedgerEntry("turn", "gpt-5.4-mini", TokenUsage(input_tokens=12, output_tokens=1))],
    ).with_turn_commit("turn-1")  # makes the commit idempotent

    result = store.commit_runtime_state(turn)
    print("head revision:", result.head_revision)
    retry = store.commit_runtime_state(turn)  # e.g. after a crash before the caller saw the result
    print("retry returns the stored result:", retry == result)

    session = store.load_session(ActivePath())
    for node in session.graph.nodes:
        print(f"  {node.node_id}: {node.payload['role']}: {node.payload['content']}")
    print("tool state:", session.checkpoint.tool_state)
    print("execution state:", session.checkpoint.execution_state)
    print("usage:", [(e.model, e.usage.total()) for e in session.token_ledger])

    stale = RuntimeCommit(session_id="chat-42", expected_head_revision=0, config={"model": "gpt-5.4-mini"})
    try:
        store.commit_runtime_state(stale)
    except HeadRevisionConflict as e:
        print("stale writer refused:", e)
    store.close()
