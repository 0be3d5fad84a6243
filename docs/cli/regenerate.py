"""Regenerate docs/cli/*.md (all but README.md) with real output: every command is run on a
store written by `lashstore demo`, in a scratch directory, and its output pasted in.

    .venv/bin/python docs/cli/regenerate.py

Needs `jq` for two of the examples. Takes about half a minute (it also writes 1,000 demo turns).
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
LASH = f"{PY} -m lashstore.cli"
WORK = Path(os.environ.get("LASHSTORE_DOCS_DIR", "/tmp/lashstore-docs/agent"))
OUT = REPO / "docs/cli"

shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
OUT.mkdir(parents=True, exist_ok=True)
ENV = {k: v for k, v in os.environ.items() if k not in ("LASHSTORE_URL", "FORCE_COLOR", "COLUMNS")}


def sh(cmd: str, *, stderr: bool = True, cwd: Path = WORK) -> str:
    # stderr into the same pipe, so lines keep the order a terminal shows.
    p = subprocess.run(["bash", "-c", f"{{ {cmd} ; }} 2>&1" if stderr else cmd], cwd=cwd, env=ENV,
                       capture_output=True, text=True)
    text = p.stdout
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return text, p.returncode


def block(cmd: str, *, stderr: bool = True, status: bool = False, show: str | None = None, trim: int | None = None,
          cwd: Path = WORK) -> str:
    text, rc = sh(cmd, stderr=stderr, cwd=cwd)
    lines = text.splitlines()
    if trim is not None and len(lines) > trim:
        lines = lines[:trim] + [f"... ({len(text.splitlines()) - trim} more lines)"]
    shown = show or cmd.replace(LASH, "lashstore")
    body = "\n".join(lines)
    tail = f"\n$ echo $?\n{rc}" if status else ""
    return f"```console\n$ {shown}\n{body}{tail}\n```\n"


def helptext(cmd: str) -> str:
    return block(f"{LASH} {cmd} --help", show=f"lashstore {cmd} --help")


def page(name: str, title: str, intro: str, *parts: str) -> None:
    (OUT / f"{name}.md").write_text(f"# `lashstore {title}`\n\n{intro.strip()}\n\n" + "\n".join(parts))


L = LASH

# -- a store with every kind of record ------------------------------------------------------------
demo_out = block(f"{L} demo", show="lashstore demo")
populate = r'''
import lashstore
with lashstore.open(".lashstore") as dep:
    reg = dep.processes
    reg.register_process(lashstore.ProcessRegistration(id="build-42", input={"cmd": "make test"}))
    reg.register_process(lashstore.ProcessRegistration(id="lint-7", input={"cmd": "ruff check"}))
    reg.complete_process("lint-7", lashstore.AwaitSuccess(value={"ok": True}))
    reg.claim_process_lease("build-42", "worker-a", 60_000)
    reg.grant_handle(lashstore.ProcessScope("demo-session"), "build-42", lashstore.ProcessHandleDescriptor())
    he = dep.host_events
    he.register_subscription(lashstore.TriggerSubscriptionDraft(session_id="demo-session", source_type="github",
                                                                source_key="pull/213", name="ci-status"))
    occ = he.record_occurrence(lashstore.HostEventOccurrenceRequest(source_type="github", source_key="pull/213",
                                                                    payload={"check": "tests", "state": "success"},
                                                                    idempotency_key="check-run-9001"))
    he.reserve_matching_deliveries(occ.occurrence_id)
    fx = dep.effects
    fx.execute(("turn", "demo-session/t12"), "weather:paris", {"city": "paris"}, lambda: {"temp_c": 21})
    fx.execute(("turn", "demo-session/t12"), "pr:213:status", {}, lambda: "green")
'''
subprocess.run([PY, "-c", populate], cwd=WORK, env=ENV, check=True)

page("demo", "demo", """
Writes a scripted coding-agent session into the store through the public API (one
`commit_runtime_state` per turn, with compare-and-swap and a turn stamp; user messages arrive as
queued work), then shows what is stored. The session has a branch (an edited message), a
tombstoned tool output, a child session, and usage for two models. `--turns N` makes it longer;
the special turns move with it.

Note: the demo's tool state, plugin snapshot and execution state carry the whole history of the
session, so each turn's snapshot is larger than the last (the logical bytes grow quadratically:
18.9 MB for 250 turns, 75.3 MB for 500, 299 MB for 1,000); zstd keeps what is stored near linear
(1.1, 2.5 and 6.1 MB). `lashstore demo --turns 1000` takes about 7 s.
""", helptext("demo"), "A run (the progress bar is drawn on the terminal while the turns are written):\n", demo_out)

page("sessions", "sessions", """
Lists the sessions of the store: id, name, model, head revision, live nodes, last update and
relation. Filter with `--match` (a glob when it holds `*`, `?` or `[`, else a substring; matched
against the id and the name, case-insensitive), order with `--sort updated|name|revision`, and
page with `--limit`/`--offset` (applied after sorting). A session file that cannot be read is
listed with its error.
""", helptext("sessions"), block(f"{L} sessions", show="lashstore sessions"),
     block(f"{L} sessions --match research", show="lashstore sessions --match research"),
     block(f"{L} sessions --sort revision --limit 1", show="lashstore sessions --sort revision --limit 1"),
     block(f"{L} sessions --match 'demo-session-*' --json", show="lashstore sessions --match 'demo-session-*' --json"))

page("show", "show", """
One session: meta, head, checkpoint, the active path (or every live node with `--full`), token
usage per (source, model), blob sizes before and after compression, and queued work. Exit status
3 when the session does not exist.
""", helptext("show"), block(f"{L} show demo-session", show="lashstore show demo-session"),
     block(f"{L} show nope", show="lashstore show nope", status=True))

page("graph", "graph SESSION", """
The conversation as a tree, with every stored node: branches, tombstoned nodes (hidden from reads
until `vacuum`), the active path and the leaf. A run of single children is drawn as one column;
where a node has several children the one on the active path (else the newest) continues the
column and each other child opens an indented branch. `--json` gives every node with its parent,
children, tombstone flag and whether it is on the active path.
""", helptext("graph"), block(f"{L} graph demo-session", show="lashstore graph demo-session"),
     block(f"{L} graph demo-session-research --no-text", show="lashstore graph demo-session-research --no-text"),
     block(f"{L} graph demo-session --json | head -24", show="lashstore graph demo-session --json | head -24"))

page("usage", "usage [SESSION]", """
Token usage (input, cached input, output, reasoning) per source and model: summed over every
session with a line per session, or for one session. Counts are what the runtime committed in
its turns' usage deltas, merged per (source, model).
""", helptext("usage"), block(f"{L} usage", show="lashstore usage"),
     block(f"{L} usage demo-session", show="lashstore usage demo-session"),
     block(f"{L} usage --by session --json | head -30", show="lashstore usage --by session --json | head -30"))

page("queue", "queue SESSION", """
A session's queued work: pending batches (nobody holds them) and claimed ones (a live claim).
""", helptext("queue"), block(f"{L} queue demo-session", show="lashstore queue demo-session"))

page("processes", "processes", """
The deployment's background processes with status, owner session and lease.
""", helptext("processes"), block(f"{L} processes", show="lashstore processes"))

page("process", "process ID", """
One process: registration, status, lease and events. Exit status 3 when there is no such process.
""", helptext("process"), block(f"{L} process lint-7", show="lashstore process lint-7"))

page("triggers", "triggers", """
Trigger subscriptions and, with `--occurrences N`, the newest host-event occurrences and the
deliveries they reserved.
""", helptext("triggers"), block(f"{L} triggers --occurrences 5", show="lashstore triggers --occurrences 5"))

page("effects", "effects", """
Recorded effect outcomes (durable calls): scope, replay key, status, attempts, outcome or lease.
""", helptext("effects"), block(f"{L} effects", show="lashstore effects"))

# -- operations ----------------------------------------------------------------------------------
gc_dry = block(f"{L} gc --dry-run", show="lashstore gc --dry-run")
gc_dry0 = block(f"{L} gc --dry-run --grace 0s", show="lashstore gc --dry-run --grace 0s")
gc_real = block(f"{L} gc --grace 0s", show="lashstore gc --grace 0s")
page("gc", "gc", """
Deletes, in every session, the blobs nothing reaches and that are older than the grace period,
then shrinks the files that changed (`VACUUM` and a WAL checkpoint; see [vacuum](vacuum.md)).
The report gives blobs and bytes of rows deleted, and each file's size on disk (database plus
WAL) before and after, so "reclaimed" is what the file system got back.

**What is kept.** A blob stays while a session head's checkpoint (the manifest and its tool,
plugin and execution snapshots), a named artifact, or an attachment manifest row reaches it.
Old checkpoints are garbage as soon as a newer head replaces them.

**The grace period** (`--grace`, default 10 minutes). A runtime may `put_blob` a snapshot and
name its ref in the commit that follows; a collection in between would delete it and that commit
would be refused ("checkpoint refers to blobs that do not exist"). Blobs younger than the grace
period are therefore never collected. Use `--grace 0s` only when no runtime is writing (as
below, right after the demo). A session whose head or checkpoint cannot be read is not collected
at all (that is what a repair needs); it is reported and the status is 1.

Right after `lashstore demo`, every blob is younger than 10 minutes:
""", helptext("gc"), gc_dry, "With no grace period:\n", gc_dry0, gc_real,
     "\nThe same from Python: `lashstore.ops.gc(deployment, grace_ms=0)` returns the report as a `GcRunReport`.\n")

# tombstone some nodes for vacuum
subprocess.run([PY, "-c", """
import lashstore
with lashstore.open(".lashstore") as dep:
    s = dep.sessions.open_store("demo-session")
    s.tombstone_nodes(["t07-user", "t07-call", "t07-tool", "t07-reply"])
    s.close()
"""], cwd=WORK, env=ENV, check=True)
page("vacuum", "vacuum", """
Removes tombstoned nodes for good, then shrinks every file of the deployment: session files and
the registries (`processes.db`, `host_events.db`, `effects.db`).

**How files shrink.** A deleted row leaves a free page inside the file; SQLite reuses it but
never gives it back on its own. lashstore runs `PRAGMA wal_checkpoint(TRUNCATE)`, `VACUUM`, and
another `wal_checkpoint(TRUNCATE)`: VACUUM rewrites the file without free pages (in WAL mode the
new content goes through the WAL, and the checkpoint moves it into the file, truncates the file
to its new size and empties the WAL). We chose this over `PRAGMA auto_vacuum=INCREMENTAL` because
incremental auto-vacuum must be set before the first table exists (a schema change for every
existing file), adds pointer-map pages and their upkeep to every commit, only moves free pages to
the end of the file without defragmenting, and still needs an explicit `incremental_vacuum` call.
With one file per session, each VACUUM rewrites one session's file: small and quick (the 1,000-turn
demo session shrinks from 11.5 MiB in well under a second). VACUUM takes the write lock:
writers of that file wait (up to the busy timeout), readers are not blocked. It needs free disk
space up to the file's size while it runs. When a reader holds an old snapshot, the WAL cannot
be truncated yet; the report marks the file (`checkpointed: false`) and the next run finishes it.

Here the demo session had one tombstoned tool output (t06-tool), and four more nodes were
tombstoned (the turn t07) before this run:
""", helptext("vacuum"), block(f"{L} vacuum", show="lashstore vacuum"),
     block(f"{L} vacuum --json | head -20", show="lashstore vacuum --json | head -20"))

# retain on the demo store
retain_dry = block(f"{L} retain --keep-turns 4 --finished-work-older-than 0s --dry-run",
                   show="lashstore retain --keep-turns 4 --finished-work-older-than 0s --dry-run")
retain_real = block(f"{L} retain --keep-turns 4 --finished-work-older-than 0s --grace 0s",
                    show="lashstore retain --keep-turns 4 --finished-work-older-than 0s --grace 0s")
graph_after = block(f"{L} graph demo-session", show="lashstore graph demo-session")
# the 1,000-turn measurement
big = WORK / "big"
big_demo, _ = sh(f"{L} --store big demo --turns 1000 > /dev/null; stat -c '%n %s' big/*.db")
big_retain = block(f"{L} --store big retain --keep-turns 50 --grace 0s",
                   show="lashstore --store big retain --keep-turns 50 --grace 0s")
big_after, _ = sh("stat -c '%n %s' big/*.db")
page("retain", "retain", """
Applies retention policies: what a deployment may forget, by age and by count. Every policy is
off unless given; at least one is required. With `--dry-run` nothing changes and the report says
what would go. Durations: `500ms`, `30s`, `15m`, `12h`, `7d`, `2w` (a bare number is seconds).

| flag | removes |
| --- | --- |
| `--idle-for D` | whole sessions whose head has not moved for D (no head: since creation), through `Deployment.delete_session`: the session, its handle grants, its trigger subscriptions (disabled) |
| `--keep-turns N` | graph history older than the last N turns of each session (below) |
| `--finished-work-older-than D` | completed and cancelled queued-work batches finished D ago, with their items (their source keys can be enqueued again) |
| `--turn-stamps-older-than D`, `--keep-turn-stamps N` | turn stamps (the records that make a retried commit return its stored result) committed D ago / beyond the newest N |
| `--compact-usage` | folds each session's usage rows into one per (source, model); `load_usage` answers exactly as before |
| `--processes-older-than D` | finished processes terminal D ago, with their events, wakes, grants and lease |
| `--occurrences-older-than D` | host-event occurrences recorded D ago, with their delivery reservations |
| `--effects-older-than D` | completed and failed effect records last updated D ago (never one in progress); a later call with that key runs again |

**What a turn is.** A turn starts at a live user-message node on the active path: a node whose
payload is `{"role": "user", ...}` (also wrapped as `{"message": {...}}` or `{"event": {...}}`),
the rule the session picker uses. The walk goes up from the head's leaf through parent pointers
(through tombstoned nodes, which are not counted). `--keep-turns N` keeps the N-th last such node
and every node below it, including branches that fork inside the kept turns; every other node
goes (older turns, and branches that forked before the cut). The kept user node becomes a root
(its `parent_node_id` is set to None). The head revision moves by one, as after a tombstone, so a
runtime holding the old head reloads before it commits; `updated_at_ms` does not move
(maintenance is not activity, so it does not keep a session from `--idle-for`). The usage ledger
and the checkpoint are untouched.

**Reclaiming.** After the policies, unreachable blobs older than `--grace` (default 10m) are
collected and every changed file is shrunk (as `gc` and `vacuum` do); `--no-reclaim` skips this.
The report gives each file's size on disk before and after.

On the demo store (12 turns, one branch):
""", helptext("retain"), retain_dry, retain_real, "The graph afterwards: the last four turns, the kept user message now a root:\n",
     graph_after, f"""
## 1,000 turns, keeping the last 50

```console
$ lashstore --store big demo --turns 1000 > /dev/null
$ stat -c '%n %s' big/*.db
{big_demo}
```

{big_retain}
```console
$ stat -c '%n %s' big/*.db
{big_after}
```

The report's "files before -> after" is the sum of those `stat` sizes (database files and WALs),
and "reclaimed" is their difference. `--grace 0s` because every blob was written seconds before;
with the default grace period the old checkpoints would be collected ten minutes later.
""")

# verify
verify_ok = block(f"{L} verify", show="lashstore verify", status=True)
shutil.copytree(WORK / ".lashstore", WORK / "damaged")
dmg = next((WORK / "damaged").glob("demo-session-3*.db"))
conn = sqlite3.connect(dmg)
ref = conn.execute("SELECT hash FROM blobs WHERE kind = 'execution_state_snapshot'").fetchone()[0]
conn.execute("UPDATE graph_nodes SET body = x'c1' WHERE node_id = 't10-tool'")
conn.execute("DELETE FROM blobs WHERE hash = ?", (ref,))
conn.commit()
conn.close()
research = next((WORK / "damaged").glob("demo-session-research-*.db"))
with open(research, "r+b") as f:
    f.truncate(research.stat().st_size // 2)
verify_bad = block(f"{L} --store damaged verify", show="lashstore --store damaged verify", status=True)
page("verify", "verify", """
Checks every stored record and exits non-zero when any is damaged. Per session file:
`PRAGMA integrity_check`; every blob inflated and checked against its sha256; every head, graph
node, turn result, session meta, queued-work batch and item decoded; every checkpoint a head
names hydrated (manifest and snapshots present and intact); the head's leaf live and its node
count right; every artifact's and attachment's bytes present. Registry files: integrity and every
process, event, subscription, occurrence and effect row decoded. Files are opened read-only:
verify never migrates, converts or repairs anything.

| exit status | meaning |
| --- | --- |
| 0 | every record checked out |
| 4 | damage found; each damaged record is listed (file, what, key, detail) |
| 1 | verify itself could not run (e.g. the store directory is unreadable) |
""", helptext("verify"), verify_ok, """
A copy of the store, damaged on purpose: a graph node's body overwritten, the head checkpoint's
execution-state blob deleted, and the child session's file truncated to half its size:
""", verify_bad)

# export / import
exp = block(f"{L} export demo-session -o demo-session.jsonl", show="lashstore export demo-session -o demo-session.jsonl")
head3 = block("head -c 700 demo-session.jsonl; echo; echo ...; tail -n 1 demo-session.jsonl",
              show="head -c 700 demo-session.jsonl; echo; echo ...; tail -n 1 demo-session.jsonl")
expall = block(f"{L} export --all -o backup/", show="lashstore export --all -o backup/")
page("export", "export", """
Writes sessions to portable, versioned JSON Lines files that `lashstore import` loads into any
backend (memory, SQLite, and later PostgreSQL). A file holds one session: its meta, head, every
graph node (tombstoned ones too), the blobs it can reach (its head checkpoint and snapshots, its
attachments, the store's named artifacts; garbage stays behind), its usage rows, turn stamps,
queued work (claims included), attachment manifest and artifacts. The format is documented in
[docs/export-format.md](../export-format.md).

With one session, `-o` names the file (`-` writes to stdout and the summary to stderr); with
several or `--all`, `-o` is a directory and each session goes to `<safe id>.jsonl`. A regular
file is written beside its target under a temporary name and renamed over it when complete (a
failure leaves the old file and no partial one); a symlink is followed, and a device or FIFO
(`/dev/null`, a named pipe) is written to directly, never replaced.
""", helptext("export"), exp, head3, expall)

imp = block(f"{L} --store copy import demo-session.jsonl", show="lashstore --store copy import demo-session.jsonl")
imp_again = block(f"{L} --store copy import demo-session.jsonl", show="lashstore --store copy import demo-session.jsonl",
                  status=True)
imp_replace = block(f"{L} --store copy import demo-session.jsonl --replace",
                    show="lashstore --store copy import demo-session.jsonl --replace")
text = (WORK / "demo-session.jsonl").read_text().splitlines()
hdr = json.loads(text[0])
hdr["version"] = 2
(WORK / "future.jsonl").write_text("\n".join([json.dumps(hdr)] + text[1:]) + "\n")
(WORK / "cut.jsonl").write_text("\n".join(text[: len(text) // 2]) + "\n")
imp_future = block(f"{L} --store copy2 import future.jsonl", show="lashstore --store copy2 import future.jsonl",
                   status=True)
imp_cut = block(f"{L} --store copy2 import cut.jsonl", show="lashstore --store copy2 import cut.jsonl", status=True)
diff = block(f"diff <({L} show demo-session --full --json | jq 'del(.store, .path, .blobs)') "
             f"<({L} --store copy show demo-session --full --json | jq 'del(.store, .path, .blobs)') && echo same",
             show="diff <(lashstore show demo-session --full --json | jq 'del(.store, .path, .blobs)') \\\n"
                  "       <(lashstore --store copy show demo-session --full --json | jq 'del(.store, .path, .blobs)') && echo same")
page("import", "import", """
Loads sessions written by `lashstore export`. Checked before anything is written: the format
name and version (an unknown version is refused), every line parses, the end line's record count
(a cut-off file is refused), every blob against its sha256, the head's leaf and live-node count,
and that the head checkpoint hydrates from the blobs in the file. On SQLite the load is one
transaction; on any failure the target is as it was (a session created for the import is removed
again). A session that exists is refused unless `--replace`, which replaces all of its records
at once. A replaced session's head revision moves one past the revision it had, when the file's
is not higher already (as every change of a head does), so a runtime still holding the old head
gets a `HeadRevisionConflict` and reloads instead of committing on top of a head it never saw.
Stop the runtimes writing that session first anyway.

| exit status | meaning |
| --- | --- |
| 0 | every file imported |
| 5 | a session exists already (nothing written; use `--replace`) |
| 1 | a file is not a lashstore export, has an unknown version, is damaged or cut off, or cannot be read |
""", helptext("import"), imp, diff, imp_again, imp_replace, imp_future, imp_cut)

# migrate: make an old file
subprocess.run([PY, "-c", """
from lashstore.backends.sqlite.connection import Database
from lashstore.backends.sqlite.schema import KIND, MIGRATIONS
import lashstore
with lashstore.open("old-store") as dep:
    dep.sessions.create_store("chat-1").close()
    path = dep.storage.session_path("chat-0")
Database(path, kind=KIND, migrations=MIGRATIONS[:1]).close()
"""], cwd=WORK, env=ENV, check=True)
page("migrate", "migrate", """
Runs schema migrations explicitly and reports each file's version before and after. Opening a
store for writing migrates its file anyway (forward, by numbered steps, under the write lock);
`migrate` does every file of the deployment at once: session files and registries. Read-only
tools (`sessions`, `verify`) refuse a file that needs a migration and say so. A file of a newer
version than this lashstore, or one that is not a lashstore file, is reported and left alone
(exit status 1).

Here `old-store` holds one session file written at schema version 1 (before queued work and
attachments) and one at the current version:
""", helptext("migrate"), block(f"{L} --store old-store migrate --dry-run", show="lashstore --store old-store migrate --dry-run"),
     block(f"{L} --store old-store migrate --dry-run --json", show="lashstore --store old-store migrate --dry-run --json"),
     block(f"{L} --store old-store migrate", show="lashstore --store old-store migrate"),
     block(f"{L} --store old-store migrate", show="lashstore --store old-store migrate"))
shutil.rmtree(WORK, ignore_errors=True)
print(f"wrote {len(list(OUT.glob('*.md')))} pages in {OUT}")
