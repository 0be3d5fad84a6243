"""`lashstore triggers` and `lashstore effects`: what the host-event and effect stores hold."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from ..model.effects import EffectRecord
from ..model.host_events import HostEventOccurrenceRecord, TriggerDelivery, TriggerSubscriptionRecord
from . import render
from .common import EXIT_OK, open_deployment

__all__ = ["add_parsers", "run_triggers", "run_effects"]

TRIGGERS_EPILOG = """\
examples:
  lashstore triggers
  lashstore triggers --session chat-42 --json
  lashstore triggers --occurrences 20      # also the 20 newest occurrences and their deliveries
"""

EFFECTS_EPILOG = """\
examples:
  lashstore effects
  lashstore effects --status in_progress   # what is running (or was left by a crashed owner)
  lashstore effects --session chat-42 --limit 50 --json
"""


class TriggersReport(msgspec.Struct, kw_only=True):
    subscriptions: list[TriggerSubscriptionRecord]
    occurrences: list[HostEventOccurrenceRecord]
    deliveries: list[TriggerDelivery]


def add_parsers(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "triggers",
        parents=parents,
        help="list trigger subscriptions (and recent occurrences)",
        description="List the deployment's trigger subscriptions in creation order: handle, session, "
        "source, enabled; with --occurrences, the newest occurrences and the deliveries they reserved.",
        epilog=TRIGGERS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--session", metavar="ID", help="only this session's subscriptions")
    p.add_argument("--occurrences", type=int, default=0, metavar="N", help="also show the N newest occurrences")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_triggers)

    p = subparsers.add_parser(
        "effects",
        parents=parents,
        help="list recorded effect outcomes",
        description="List recorded effects (durable calls): scope, key, status, attempts, and the lease "
        "of one in progress. Newest last.",
        epilog=EFFECTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--session", metavar="ID", help="only effects of this session")
    p.add_argument("--status", choices=["in_progress", "completed", "failed"], help="only this status")
    p.add_argument("--limit", type=int, default=100, help="the newest N (default 100)")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(handler=run_effects)


def _exists(dep: Any, name: str) -> bool:
    return dep.storage.has_registry(name)


def run_triggers(args: argparse.Namespace) -> int:
    from ..model.host_events import TriggerSubscriptionFilter

    report = TriggersReport(subscriptions=[], occurrences=[], deliveries=[])
    with open_deployment(args.store) as dep:
        if _exists(dep, "host_events"):
            he = dep.host_events
            report.subscriptions = he.list_subscriptions(TriggerSubscriptionFilter(session_id=args.session))
            if args.occurrences:
                report.occurrences = he.list_occurrences(limit=args.occurrences)
                wanted = {o.occurrence_id for o in report.occurrences}
                report.deliveries = [d for d in he.list_deliveries(session_id=args.session) if d.occurrence_id in wanted]
    if args.json:
        render.write_json(report)
        return EXIT_OK
    console = render.out()
    if not report.subscriptions and not report.occurrences:
        console.print(Text(f"no trigger subscriptions in {args.store}", style="dim"))
        return EXIT_OK
    t = Table(title=f"{len(report.subscriptions)} trigger subscriptions", title_justify="left")
    for col in ("handle", "session", "name", "source type", "source key", "enabled", "updated"):
        t.add_column(col, overflow="ellipsis", no_wrap=col == "source key", max_width=40 if col == "source key" else None)
    for s in report.subscriptions:
        t.add_row(s.handle, s.session_id, s.name or "-", s.source_type, s.source_key,
                  Text("yes", style="green") if s.enabled else Text("no", style="dim"), render.human_time(s.updated_at_ms))
    console.print(t)
    if report.occurrences:
        per_occ: dict[str, list[str]] = {}
        for d in report.deliveries:
            per_occ.setdefault(d.occurrence_id, []).append(d.subscription_id)
        o = Table(title="Newest occurrences", title_justify="left")
        for col in ("occurred", "source type", "idempotency key", "deliveries"):
            o.add_column(col)
        for occ in report.occurrences:
            o.add_row(render.human_time(occ.occurred_at_ms), occ.source_type, occ.idempotency_key,
                      str(len(per_occ.get(occ.occurrence_id, []))))
        console.print(o)
    return EXIT_OK


def run_effects(args: argparse.Namespace) -> int:
    rows: list[EffectRecord] = []
    with open_deployment(args.store) as dep:
        if _exists(dep, "effects"):
            rows = dep.effects.list_effects(session_id=args.session, status=args.status, limit=args.limit)
    if args.json:
        render.write_json(rows)
        return EXIT_OK
    console = render.out()
    if not rows:
        console.print(Text(f"no recorded effects in {args.store}", style="dim"))
        return EXIT_OK
    t = Table(title=f"{len(rows)} effects", title_justify="left")
    for col in ("scope", "key", "status", "attempts", "outcome / lease", "updated"):
        t.add_column(col, overflow="ellipsis", no_wrap=True, max_width=44 if col in ("key", "outcome / lease") else None)
    styles = {"completed": "green", "failed": "red", "in_progress": "yellow"}
    for r in rows:
        scope = f"{r.scope.kind}:{r.scope.session_id + '/' if r.scope.session_id else ''}{r.scope.id}"
        status = str(getattr(r.status, "value", r.status))
        if status == "in_progress":
            detail = f"lease {r.lease_owner_id or 'released'} until {render.human_time(r.lease_expires_at_ms)}"
        elif status == "failed" and r.error is not None:
            detail = f"{r.error.code}: {r.error.message}"
        else:
            detail = msgspec.json.encode(msgspec.to_builtins(r.outcome)).decode()
        t.add_row(scope, r.replay_key, Text(status, style=styles.get(status, "")), str(r.attempts), Text(detail),
                  render.human_time(r.updated_at_ms))
    console.print(t)
    return EXIT_OK
