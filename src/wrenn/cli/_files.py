"""``wrenn files``: list, download, upload, remove and make directories, in bounded memory."""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
from collections.abc import Iterator
from typing import IO, Any

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .._constants import CLI_UPLOAD_CHUNK
from . import _output as out
from ._app import CONTEXT_SETTINGS, State, output_options, pass_state


def _progress(enabled: bool) -> Progress:
    """A transfer bar on stderr, shown only to a person at a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=out.stderr(),
        disable=not enabled or not out.stderr().is_terminal,
        transient=False,
    )


_no_progress = click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")


@click.group(context_settings=CONTEXT_SETTINGS)
def files() -> None:
    """Work with files inside a capsule (a paused capsule is resumed first).

    \b
    Examples:
      wrenn files ls cl-0123456789abcdef /root
      wrenn files put cl-0123456789abcdef ./data.csv /root/data.csv
      wrenn files get cl-0123456789abcdef /root/out.tar.gz ./out.tar.gz
      wrenn files get cl-0123456789abcdef /etc/os-release -   # to stdout
    """


@files.command("ls", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@click.argument("path", default="/")
@click.option("--depth", type=click.IntRange(min=1), default=1, show_default=True)
@output_options
@pass_state
def files_ls(state: State, capsule_id: str, path: str, depth: int) -> None:
    """List a directory.

    \b
    Example:
      wrenn files ls cl-0123456789abcdef /root --depth 2
    """
    entries = state.capsule(capsule_id).files.list(path, depth=depth)
    if state.json:
        out.print_json(entries)
        return
    rows = [
        (e.permissions, e.type, out.human_size(e.size), e.path or e.name)
        for e in sorted(entries, key=lambda e: e.path or e.name)
    ]
    out.print_table(("MODE", "TYPE", "SIZE", "PATH"), rows, empty="empty directory")


def _remote_size(capsule: Any, path: str) -> int | None:
    parent, name = posixpath.split(posixpath.normpath(path))
    with contextlib.suppress(Exception):
        for entry in capsule.files.list(parent or "/"):
            if entry.name == name:
                return int(entry.size) if entry.size is not None else None
    return None


@files.command("get", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@click.argument("remote")
@click.argument("local", required=False, type=click.Path(dir_okay=True, allow_dash=True))
@_no_progress
@output_options
@pass_state
def files_get(
    state: State, capsule_id: str, remote: str, local: str | None, no_progress: bool
) -> None:
    """Download REMOTE to LOCAL (default: its name in the current directory; - for stdout).

    \b
    Examples:
      wrenn files get cl-0123456789abcdef /root/report.pdf
      wrenn files get cl-0123456789abcdef /root/log.txt - | tail
    """
    capsule = state.capsule(capsule_id)
    to_stdout = local == "-"
    target = local or posixpath.basename(posixpath.normpath(remote)) or "download"
    if not to_stdout and os.path.isdir(target):
        target = os.path.join(target, posixpath.basename(posixpath.normpath(remote)))
    size = _remote_size(capsule, remote)
    written = 0
    partial = target + ".part"
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(_progress(not no_progress and not state.json))
        task = progress.add_task(posixpath.basename(remote) or remote, total=size)
        chunks = stack.enter_context(capsule.files.download_stream(remote))
        sink = sys.stdout.buffer if to_stdout else stack.enter_context(open(partial, "wb"))
        try:
            for chunk in chunks:
                sink.write(chunk)
                written += len(chunk)
                progress.update(task, advance=len(chunk))
            sink.flush()
        except BaseException:
            if not to_stdout:
                sink.close()
                with contextlib.suppress(OSError):
                    os.unlink(partial)
            raise
    if not to_stdout:
        os.replace(partial, target)
    if state.json:
        out.print_json({"remote": remote, "local": local or target, "bytes": written})
    elif not to_stdout:
        out.stderr().print(f"{remote} -> {target} ({out.human_size(written)})")


def _read_chunks(source: IO[bytes], on_chunk: Any) -> Iterator[bytes]:
    while True:
        chunk = source.read(CLI_UPLOAD_CHUNK)
        if not chunk:
            return
        on_chunk(len(chunk))
        yield chunk


@files.command("put", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@click.argument("local", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.argument("remote")
@_no_progress
@output_options
@pass_state
def files_put(state: State, capsule_id: str, local: str, remote: str, no_progress: bool) -> None:
    """Upload LOCAL (- for stdin) to REMOTE; a REMOTE ending in / keeps the file's name.

    \b
    Examples:
      wrenn files put cl-0123456789abcdef ./model.bin /root/
      tar cz src | wrenn files put cl-0123456789abcdef - /root/src.tar.gz
    """
    capsule = state.capsule(capsule_id)
    if remote.endswith("/"):
        if local == "-":
            raise click.UsageError("REMOTE must name a file when uploading stdin")
        remote = remote + os.path.basename(local)
    sent = 0

    def advance(count: int) -> None:
        nonlocal sent
        sent += count
        progress.update(task, advance=count)

    with contextlib.ExitStack() as stack:
        size = None if local == "-" else os.path.getsize(local)
        progress = stack.enter_context(_progress(not no_progress and not state.json))
        task = progress.add_task(os.path.basename(local), total=size)
        source = sys.stdin.buffer if local == "-" else stack.enter_context(open(local, "rb"))
        capsule.files.upload_stream(remote, _read_chunks(source, advance))
    if state.json:
        out.print_json({"local": local, "remote": remote, "bytes": sent})
    else:
        out.stderr().print(f"{local} -> {remote} ({out.human_size(sent)})")


@files.command("rm", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@output_options
@pass_state
def files_rm(state: State, capsule_id: str, paths: tuple[str, ...]) -> None:
    """Remove files or directory trees.

    \b
    Example:
      wrenn files rm cl-0123456789abcdef /root/tmp /root/cache
    """
    capsule = state.capsule(capsule_id)
    for path in paths:
        capsule.files.remove(path)
        if state.json:
            out.print_json({"path": path, "removed": True}, compact=True)


@files.command("mkdir", context_settings=CONTEXT_SETTINGS)
@click.argument("capsule_id", metavar="CAPSULE")
@click.argument("path")
@output_options
@pass_state
def files_mkdir(state: State, capsule_id: str, path: str) -> None:
    """Create a directory (an existing one is fine).

    \b
    Example:
      wrenn files mkdir cl-0123456789abcdef /root/work
    """
    entry = state.capsule(capsule_id).files.make_dir(path)
    if state.json:
        out.print_json(entry)
