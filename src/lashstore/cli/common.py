"""What every command shares: exit statuses and opening the store named by --store."""

from __future__ import annotations

import os
from pathlib import Path

from .. import deployment as _deployment
from ..deployment import Deployment

__all__ = [
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_NOT_FOUND",
    "default_store_url",
    "open_deployment",
    "store_directory",
    "session_file",
]

EXIT_OK = 0
EXIT_ERROR = 1  # lashstore raised; the message is on stderr
EXIT_USAGE = 2  # argparse's own status for bad command lines
EXIT_NOT_FOUND = 3


def default_store_url() -> str:
    return os.environ.get("LASHSTORE_URL") or _deployment.DEFAULT_URL


def open_deployment(url: str) -> Deployment:
    return _deployment.open(url)


def store_directory(dep: Deployment) -> Path | None:
    """The directory of a SQLite deployment, None for one that has no files."""
    return Path(dep.storage.location).resolve() if dep.backend == "sqlite" else None


def session_file(dep: Deployment, session_id: str) -> Path | None:
    path = dep.storage.session_path(session_id)
    return None if path is None else Path(path).resolve()
