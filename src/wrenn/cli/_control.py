"""The control plane: ``wrenn capsules``, ``wrenn snapshots``, ``wrenn events``, usage and stats."""

from __future__ import annotations

from typing import Any

import click

from . import _output as out
from ._app import CONTEXT_SETTINGS, State, output_options, pass_state

_CAPSULE_COLUMNS = ("ID", "STATUS", "TEMPLATE", "VCPUS", "MEMORY MB", "CREATED")


def _capsule_row(capsule: Any) -> tuple[Any, ...]:
    return (
        capsule.id,
        capsule.status,
        capsule.template,
        capsule.vcpus,
        capsule.memory_mb,
        capsule.created_at,
    )


def _show_capsule(state: State, capsule: Any) -> None:
    if state.json:
        out.print_json(capsule)
    else:
        out.print_record(out.fields_of(capsule))


_no_wait = click.option(
    "--no-wait", is_flag=True, help="Return at once instead of waiting for the transition."
)
_wait_timeout = click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the transition.",
)


@click.group(context_settings=CONTEXT_SETTINGS)
def capsules() -> None:
    """Create, inspect, pause, resume and destroy capsules.

    \b
    Examples:
      wrenn capsules create --template minimal
      wrenn capsules list
      wrenn capsules get cl-0123456789abcdef
      wrenn capsules destroy cl-0123456789abcdef
    """


@capsules.command("list", context_settings=CONTEXT_SETTINGS)
@output_options
@pass_state
def capsules_list(state: State) -> None:
    """List the team's capsules.

    \b
    Examples:
      wrenn capsules list
      wrenn capsules list --json | jq -r '.[].id'
    """
    found = state.client().capsules.list()
    if state.json:
        out.print_json(found)
    else:
        out.print_table(_CAPSULE_COLUMNS, map(_capsule_row, found), empty="no capsules")


@capsules.command("get", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@output_options
@pass_state
def capsules_get(state: State, capsule_id: str) -> None:
    """Show one capsule.

    \b
    Example:
      wrenn capsules get cl-0123456789abcdef --json
    """
    _show_capsule(state, state.client().capsules.get(capsule_id))


@capsules.command("create", context_settings=CONTEXT_SETTINGS)
@click.option("--template", "-t", default=None, help="Template or snapshot to boot from.")
@click.option("--vcpus", type=click.IntRange(min=1), default=None, help="Virtual CPUs.")
@click.option("--memory-mb", type=click.IntRange(min=1), default=None, help="Memory in MiB.")
@click.option(
    "--timeout",
    "timeout_sec",
    type=click.IntRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Inactivity timeout before the capsule is paused.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the new capsule's id.")
@_no_wait
@_wait_timeout
@output_options
@pass_state
def capsules_create(
    state: State,
    template: str | None,
    vcpus: int | None,
    memory_mb: int | None,
    timeout_sec: int | None,
    quiet: bool,
    no_wait: bool,
    wait_timeout: float,
) -> None:
    """Create a capsule; waits until it is running unless --no-wait.

    \b
    Examples:
      wrenn capsules create --template minimal --vcpus 2 --memory-mb 1024
      CAPSULE=$(wrenn capsules create -q)
    """
    capsule = state.client().capsules.create(
        template=template,
        vcpus=vcpus,
        memory_mb=memory_mb,
        timeout_sec=timeout_sec,
        wait=not no_wait,
        wait_timeout=wait_timeout,
    )
    if quiet:
        click.echo(capsule.id)
    else:
        _show_capsule(state, capsule)


def _transition(verb: str) -> click.Command:
    @click.command(verb, context_settings=CONTEXT_SETTINGS)
    @click.argument("capsule_id", metavar="CAPSULE")
    @_no_wait
    @_wait_timeout
    @output_options
    @pass_state
    def command(state: State, capsule_id: str, no_wait: bool, wait_timeout: float) -> None:
        action = getattr(state.client().capsules, verb)
        _show_capsule(state, action(capsule_id, wait=not no_wait, wait_timeout=wait_timeout))

    command.help = (
        f"{verb.capitalize()} a capsule; waits until the transition is over unless --no-wait."
        f"\n\n\b\nExample:\n  wrenn capsules {verb} cl-0123456789abcdef"
    )
    return command


capsules.add_command(_transition("pause"))
capsules.add_command(_transition("resume"))


@capsules.command("ping", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@output_options
@pass_state
def capsules_ping(state: State, capsule_id: str) -> None:
    """Reset a running capsule's inactivity timer.

    \b
    Example:
      wrenn capsules ping cl-0123456789abcdef
    """
    state.client().capsules.ping(capsule_id)
    if state.json:
        out.print_json({"id": capsule_id, "pinged": True})


@capsules.command("destroy", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_ids", metavar="CAPSULE...", nargs=-1, required=True)
@_no_wait
@_wait_timeout
@output_options
@pass_state
def capsules_destroy(
    state: State, capsule_ids: tuple[str, ...], no_wait: bool, wait_timeout: float
) -> None:
    """Destroy one or more capsules; waits until each is stopped unless --no-wait.

    \b
    Examples:
      wrenn capsules destroy cl-0123456789abcdef
      wrenn capsules list --json | jq -r '.[].id' | xargs wrenn capsules destroy
    """
    client = state.client()
    for capsule_id in capsule_ids:
        client.capsules.destroy(capsule_id, wait=not no_wait, wait_timeout=wait_timeout)
        if state.json:
            out.print_json({"id": capsule_id, "destroyed": True}, compact=True)
        else:
            out.stderr().print(f"destroyed {capsule_id}")


# --- snapshots ------------------------------------------------------------------------


@click.group(context_settings=CONTEXT_SETTINGS)
def snapshots() -> None:
    """Snapshot capsules into templates, list and delete them.

    \b
    Examples:
      wrenn snapshots create cl-0123456789abcdef --name my-snapshot
      wrenn capsules create --template my-snapshot
      wrenn snapshots delete my-snapshot
    """


@snapshots.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--type", "kind", default=None, help="Only this kind (base or snapshot).")
@output_options
@pass_state
def snapshots_list(state: State, kind: str | None) -> None:
    """List templates and snapshots.

    \b
    Example:
      wrenn snapshots list --type snapshot
    """
    found = state.client().snapshots.list(type=kind)
    if state.json:
        out.print_json(found)
        return
    rows = [
        (t.name, t.type, t.vcpus, t.memory_mb, out.human_size(t.size_bytes), t.created_at)
        for t in found
    ]
    out.print_table(
        ("NAME", "TYPE", "VCPUS", "MEMORY MB", "SIZE", "CREATED"), rows, empty="no templates"
    )


@snapshots.command("create", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@click.option("--name", "-n", default=None, help="Template name (default: snapshot-<hex>).")
@click.option("--overwrite", is_flag=True, help="Replace a template of the same name.")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the snapshot.",
)
@output_options
@pass_state
def snapshots_create(
    state: State, capsule_id: str, name: str | None, overwrite: bool, wait_timeout: float
) -> None:
    """Snapshot a capsule into a template and wait until the template exists.

    \b
    Example:
      wrenn snapshots create cl-0123456789abcdef --name my-snapshot
    """
    template = state.client().snapshots.create(
        capsule_id, name=name, overwrite=overwrite, wait_timeout=wait_timeout
    )
    if state.json:
        out.print_json(template)
    else:
        out.print_record(out.fields_of(template))


@snapshots.command("delete", context_settings=CONTEXT_SETTINGS)
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@output_options
@pass_state
def snapshots_delete(state: State, names: tuple[str, ...]) -> None:
    """Delete one or more snapshot templates.

    \b
    Example:
      wrenn snapshots delete my-snapshot
    """
    for name in names:
        state.client().snapshots.delete(name)
        if state.json:
            out.print_json({"name": name, "deleted": True}, compact=True)
        else:
            out.stderr().print(f"deleted {name}")


# --- events, usage, stats -------------------------------------------------------------


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--capsule", "capsule_id", default=None, help="Only events about this capsule.")
@click.option(
    "--count", "-n", type=click.IntRange(min=1), default=None, help="Stop after N events."
)
@output_options
@pass_state
def events(state: State, capsule_id: str | None, count: int | None) -> None:
    """Tail the team's event stream until Ctrl-C (or --count events).

    With --json, one JSON object per line.

    \b
    Examples:
      wrenn events
      wrenn events --capsule cl-0123456789abcdef --json | jq .event
    """
    seen = 0
    with state.client().events.stream() as stream:
        for event in stream:
            if event.event == "connected":
                continue  # the stream's own hello, not an event of the team
            resource = event.resource.id if event.resource is not None else None
            sandbox = event.sandbox.id if event.sandbox is not None else None
            if capsule_id is not None and capsule_id not in (resource, sandbox):
                continue
            if state.json:
                out.print_json(event, compact=True)
            else:
                parts = [
                    out.cell(event.timestamp),
                    out.cell(event.event),
                    resource or sandbox or "-",
                    out.cell(event.outcome),
                ]
                if event.error:
                    parts.append(event.error)
                click.echo("  ".join(parts))
            seen += 1
            if count is not None and seen >= count:
                return


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--from", "from_", default=None, metavar="YYYY-MM-DD", help="First day.")
@click.option("--to", default=None, metavar="YYYY-MM-DD", help="Last day.")
@output_options
@pass_state
def usage(state: State, from_: str | None, to: str | None) -> None:
    """Daily CPU and memory usage of the team.

    \b
    Example:
      wrenn usage --from 2026-01-01 --to 2026-01-31
    """
    report = state.client().capsules.usage(from_=from_, to=to)
    if state.json:
        out.print_json(report)
        return
    rows = [(p.date, p.cpu_minutes, p.ram_mb_minutes) for p in report.points or []]
    out.print_table(("DATE", "CPU MINUTES", "RAM MB-MINUTES"), rows, empty="no usage")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--range", "range_", default=None, help="5m, 1h, 6h, 24h or 30d.")
@output_options
@pass_state
def stats(state: State, range_: str | None) -> None:
    """Running capsules and reserved resources, now and at their peak.

    \b
    Example:
      wrenn stats --range 24h
    """
    report = state.client().capsules.stats(range=range_)
    if state.json:
        out.print_json(report)
        return
    current, peaks = report.current, report.peaks
    out.print_record(
        [
            ("range", report.range),
            ("running", current.running_count if current else None),
            ("vcpus reserved", current.vcpus_reserved if current else None),
            ("memory MB reserved", current.memory_mb_reserved if current else None),
            ("peak running", peaks.running_count if peaks else None),
            ("peak vcpus", peaks.vcpus if peaks else None),
            ("peak memory MB", peaks.memory_mb if peaks else None),
        ]
    )
