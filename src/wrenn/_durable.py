"""Durable commands: the spool layout inside the capsule and the shell wrapper that writes it.

Pure data and parsing, no I/O, shared by the async and the blocking client.

A durable command runs under a small POSIX shell wrapper, started as a tagged
background process, and a supervisor the wrapper starts in a session of its own (so
that killing the tag ends the command rather than only the spooling, see ``WRAPPER``).
The supervisor feeds the command's stdout and stderr through two FIFOs into two
spoolers, each appending to segment files named by the byte offset they start at::

    /tmp/.wrenn-durable/<tag>/o.00000000000000000000     stdout bytes 0 ...
    /tmp/.wrenn-durable/<tag>/o.00000000000000262144     stdout bytes 262144 ...
    /tmp/.wrenn-durable/<tag>/e.00000000000000000000     stderr bytes 0 ...
    /tmp/.wrenn-durable/<tag>/o.dropped                  stdout bytes dropped so far
    /tmp/.wrenn-durable/<tag>/pid                        the command's pid
    /tmp/.wrenn-durable/<tag>/exit                       its exit status, once it ended
    /tmp/.wrenn-durable/<tag>/life                       the wrapper's life line (a FIFO)

A spooler starts a new segment once the current one holds ``segment`` bytes and
deletes the oldest while the rest would still hold more than ``budget`` bytes, so
a stream keeps at most about ``budget`` bytes and every byte keeps its offset: a
reader that asks for an offset below the oldest segment learns exactly how many
bytes are gone. ``exit`` is written (atomically, by rename) only after both
spoolers have drained, so a reader that sees it has seen all the output there is.

The command itself travels as argv (``"$@"``), never inside a shell string, so
nothing the caller passes is parsed by a shell it did not ask for.
"""

from __future__ import annotations

import re

from ._constants import DURABLE_READ_CHUNK, MAX_SEGMENT
from ._process import StreamEvent, StreamStderrEvent, StreamStdoutEvent

SPOOL_ROOT = "/tmp/.wrenn-durable"
STREAMS = ("o", "e")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SEGMENT = re.compile(r"^([oe])\.([0-9]{20})$")

# The tagged process: $1 the supervisor's script, then the supervisor's arguments.
# ``commands.kill(tag)`` signals this wrapper (its process group on wrenn.local, maybe
# only its pid on the platform), never the command, which has a session of its own. So
# the supervisor that spools and records the exit runs in another session, where such
# a kill cannot reach it, and this wrapper holds the write end of a FIFO (the "life
# line") that the supervisor watches: when the wrapper dies, however it was killed, the
# FIFO has no writer left, the supervisor reads EOF and kills the command, and the exit
# status (137) is recorded as for any kill. A SIGTERM is passed on, to end the command.
WRAPPER = r"""
set -u
s=$1 d=$2
shift
rm -rf -- "$d" && mkdir -p -- "$d" && mkfifo -- "$d/life" || exit 125
exec 3<> "$d/life"
if command -v setsid > /dev/null 2>&1; then
  setsid /bin/sh -c "$s" wrenn-durable "$@" < "$d/life" > /dev/null 2>&1 3>&- &
else
  /bin/sh -c "$s" wrenn-durable "$@" < "$d/life" > /dev/null 2>&1 3>&- &
fi
sup=$!
trap 'kill -s TERM "$sup" 2>/dev/null' TERM INT HUP
while :; do
  wait "$sup"
  code=$?
  kill -0 "$sup" 2>/dev/null || break
done
exit "$code"
""".strip()

# The supervisor: $1 spool dir, $2 budget, $3 segment size, $4 read size, then the
# command's argv; its stdin is the wrapper's life line. The command runs in a session
# (and process group) of its own where ``setsid`` exists, so a signal reaches everything
# it started and the spoolers see its output end.
SUPERVISOR = r"""
set -u
exec 4<&0
d=$1 budget=$2 seg=$3 chunk=$4
shift 4
name() { printf '%s/%s.%020d' "$d" "$1" "$2"; }
spool() {
  k=$1 total=0 start=0 oldest=0
  cur=$(name "$k" 0)
  : > "$cur"
  while :; do
    dd bs="$chunk" count=1 2>/dev/null >> "$cur" || break
    size=$(wc -c < "$cur")
    [ $((start + size)) -eq "$total" ] && break
    total=$((start + size))
    if [ "$size" -ge "$seg" ]; then
      start=$total
      cur=$(name "$k" "$start")
      : > "$cur"
    fi
    while [ $((total - oldest)) -gt "$budget" ] && [ "$oldest" -lt "$start" ]; do
      rm -f -- "$(name "$k" "$oldest")"
      for f in "$d/$k".[0-9]*; do
        n=${f##*.}
        n=${n#"${n%%[!0]*}"}
        oldest=${n:-0}
        break
      done
      printf '%s\n' "$oldest" > "$d/$k.dropped"
    done
  done
}
mkfifo -- "$d/o.fifo" "$d/e.fifo" || exit 125
spool o < "$d/o.fifo" 4<&- &
so=$!
spool e < "$d/e.fifo" 4<&- &
se=$!
if command -v setsid > /dev/null 2>&1; then
  setsid "$@" > "$d/o.fifo" 2> "$d/e.fifo" < /dev/null 4<&- &
else
  "$@" > "$d/o.fifo" 2> "$d/e.fifo" < /dev/null 4<&- &
fi
child=$!
printf '%s\n' "$child" > "$d/pid"
stop() { kill -s "$1" -- "-$child" 2>/dev/null || kill -s "$1" "$child" 2>/dev/null; }
trap 'stop TERM' TERM INT HUP
# fd 4 (a background job's stdin would be /dev/null): EOF once the wrapper is gone.
{ read -r _ <&4 || stop KILL; } &
watch=$!
exec 4<&-
while :; do
  wait "$child"
  code=$?
  kill -0 "$child" 2>/dev/null || break
done
kill "$watch" 2>/dev/null
wait "$so" "$se"
rm -f -- "$d/o.fifo" "$d/e.fifo" "$d/life"
printf '%s\n' "$code" > "$d/exit.tmp" && mv -f -- "$d/exit.tmp" "$d/exit"
exit "$code"
""".strip()

# Send a signal to the durable command itself (not to its wrapper): $1 signal, $2 pid file.
KILL_SCRIPT = 'p=$(cat -- "$2") && { kill -s "$1" -- "-$p" 2>/dev/null || kill -s "$1" "$p"; }'


def check_tag(tag: object) -> str:
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a str, not {type(tag).__name__}")
    if not _TAG.match(tag):
        raise ValueError(
            "a durable command's tag is 1 to 64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {tag!r}"
        )
    return tag


def spool_dir(tag: str) -> str:
    return f"{SPOOL_ROOT}/{check_tag(tag)}"


def segment_size(budget: int) -> int:
    """Segments of an eighth of the budget (at most 256 KiB): a reader re-reads at most
    one segment to catch up, and the spool overshoots its budget by at most one."""
    return max(1024, min(MAX_SEGMENT, budget // 8))


def read_size(budget: int) -> int:
    """Bytes a spooler reads at once: a segment overshoots its size by less than this."""
    return max(512, min(DURABLE_READ_CHUNK, segment_size(budget) // 2))


def parse_segment(name: str) -> tuple[str, int] | None:
    """``("o", 262144)`` for ``o.00000000000000262144``; None for any other file."""
    match = _SEGMENT.match(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


class DurableStdoutEvent(StreamStdoutEvent):
    """Stdout of a durable command: ``data`` (text), ``raw`` (the exact bytes) and
    ``offset`` (where ``raw`` starts in the command's whole stdout)."""

    __slots__ = ("offset", "raw")

    def __init__(self, data: str, raw: bytes, offset: int) -> None:
        super().__init__(data)
        self.raw = raw
        self.offset = offset


class DurableStderrEvent(StreamStderrEvent):
    """Stderr of a durable command, like ``DurableStdoutEvent``."""

    __slots__ = ("offset", "raw")

    def __init__(self, data: str, raw: bytes, offset: int) -> None:
        super().__init__(data)
        self.raw = raw
        self.offset = offset


class StreamDroppedEvent(StreamEvent):
    """Bytes of ``stream`` ("stdout" or "stderr") the spool dropped to stay within its
    budget: ``dropped`` bytes starting at ``offset`` are gone for good."""

    __slots__ = ("dropped", "offset", "stream")

    def __init__(self, stream: str, offset: int, dropped: int) -> None:
        super().__init__("dropped")
        self.stream = stream
        self.offset = offset
        self.dropped = dropped
