"""The `lashstore` command: argparse for the command line, rich for the output.

`import lashstore` never imports this package (nor rich); only the command does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..deployment import parse_url
from ..errors import LashStoreError, NotFound
from .common import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, default_store_url

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_NOT_FOUND"]

EPILOG = """\
examples:
  lashstore demo                              # write a scripted agent session into ./.lashstore
  lashstore sessions --match 'demo*' --sort revision --limit 20
  lashstore show demo-session                 # head, active path, usage and blobs of one session
  lashstore show demo-session --full --json   # the whole graph, for scripts
  lashstore graph demo-session                # the conversation as a tree: branches, tombstones
  lashstore usage                             # tokens per model and source, over every session
  lashstore queue demo-session                # pending and claimed work of a session
  lashstore processes --status running        # background processes, their leases
  lashstore process build-42                  # one process and its events
  lashstore triggers --occurrences 10         # trigger subscriptions, recent occurrences
  lashstore effects --status in_progress      # recorded durable calls
  lashstore retain --keep-turns 50 --dry-run  # what retention would remove
  lashstore gc && lashstore vacuum            # collect unreachable blobs, drop tombstones, shrink files
  lashstore verify                            # every record, blob hash and checkpoint
  lashstore export demo-session -o demo.jsonl && lashstore --store /tmp/copy import demo.jsonl
  lashstore migrate                           # schema migrations, versions before and after
  lashstore copy ./.lashstore 'postgresql://agent@db/agents?schema=lashstore'   # a whole deployment, verified
  lashstore --store sqlite:////var/lib/agent/sessions sessions
  LASHSTORE_URL=/tmp/demo-store lashstore sessions --json

store URLs: a directory path, sqlite:///relative/dir, sqlite:////absolute/dir, memory://,
            postgresql://user@host:5432/db?schema=lashstore
            (options as a query: ?synchronous=full&blob_profile=compact)

exit status: 0 ok, 1 error reported by lashstore, 2 usage error, 3 session or process not found,
             4 verify found damaged records, 5 import refused: the session exists (use --replace)
"""

STORE_HELP = "the store to use (default: $LASHSTORE_URL, else ./.lashstore)"


def build_parser() -> argparse.ArgumentParser:
    from . import copy, demo, events, graph, inspect, ops, processes, queue, usage

    parser = argparse.ArgumentParser(
        prog="lashstore",
        description="Inspect and exercise a lashstore session store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)
    parser.add_argument("--version", action="version", version=f"lashstore {__version__}")
    # --store is accepted after the command too; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="URL", default=argparse.SUPPRESS, help=STORE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    demo.add_parser(sub, [common])
    inspect.add_parsers(sub, [common])
    graph.add_parser(sub, [common])
    usage.add_parser(sub, [common])
    queue.add_parser(sub, [common])
    processes.add_parsers(sub, [common])
    events.add_parsers(sub, [common])
    ops.add_parsers(sub, [common])
    copy.add_parser(sub, [])
    return parser


def _rich_missing() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        sys.stderr.write("error: the lashstore command needs rich; reinstall lashstore (rich is one of its dependencies): pip install --force-reinstall lashstore\n")
        return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script passes it to sys.exit)."""
    if _rich_missing():
        return EXIT_ERROR
    from . import render

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error argparse already printed
        return e.code if type(e.code) is int else (EXIT_OK if e.code is None else EXIT_USAGE)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args.store = args.store or default_store_url()
    try:
        parse_url(args.store)
    except LashStoreError as e:
        render.print_error(f"--store: {e}")
        return EXIT_USAGE
    try:
        return args.handler(args)
    except NotFound as e:
        render.print_error(str(e))
        return EXIT_NOT_FOUND
    except LashStoreError as e:
        render.print_error(str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        render.print_error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`lashstore sessions --json | head`); stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as e:
        # A file the command was told to read or write (an export's -o, an import's file).
        where = f"{e.filename}: " if e.filename else ""
        render.print_error(f"{where}{e.strerror or e}")
        return EXIT_ERROR
