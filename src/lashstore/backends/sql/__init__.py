"""The statements of each capability, written once for every SQL backend (see engine/tx.py)."""
