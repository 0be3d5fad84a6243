from .factory import SqliteSessionStoreFactory, safe_file_name
from .store import SqliteSessionStore

__all__ = ["SqliteSessionStore", "SqliteSessionStoreFactory", "safe_file_name"]
