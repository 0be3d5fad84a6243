"""Adapters that put agent frameworks' state in lashstore.

Each adapter lives in its own module and imports its framework there, so `import lashstore`
never pulls a framework in:

* `lashstore.integrations.langgraph`: `LashstoreSaver`, a LangGraph checkpointer
  (`pip install 'lashstore[langgraph]'`);
* `lashstore.integrations.openai_agents`: `LashstoreSession`, an OpenAI Agents SDK session
  (`pip install 'lashstore[openai-agents]'`).
"""

__all__: list[str] = []
