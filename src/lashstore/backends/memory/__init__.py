from .factory import MemorySessionStoreFactory
from .store import MemoryFile, MemorySessionStore

__all__ = ["MemoryFile", "MemorySessionStore", "MemorySessionStoreFactory"]
