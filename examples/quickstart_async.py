"""The same store from asyncio: each operation is one hop to the store's worker thread."""

import asyncio

import lashstore.aio
from lashstore import GraphAppend, GraphNode, RuntimeCommit


async def main() -> None:
    async with lashstore.aio.open("memory://") as deployment:
        store = await deployment.sessions.create_store("chat-7")
        await store.commit_runtime_state(
            RuntimeCommit(
                session_id="chat-7",
                expected_head_revision=0,
                graph=GraphAppend([GraphNode(node_id="u1", payload={"role": "user", "content": "hi"})], "u1"),
            )
        )
        session = await store.load_session()
        print("revision", session.head_revision, "nodes", [n.node_id for n in session.graph.nodes])
        await store.close()


asyncio.run(main())
