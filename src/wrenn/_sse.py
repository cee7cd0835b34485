"""A sans-I/O decoder for server-sent events, following the WHATWG rules.

Lines end at CRLF, LF or CR only (not at the other characters ``str.splitlines``
knows); a field value loses exactly one leading space; an event is dispatched at a
blank line, and an event the stream ends before completing is discarded, never
dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


@dataclass
class SSEDecoder:
    """Feed text chunks with ``feed``; it returns the events completed by them."""

    last_event_id: str | None = None
    retry: int | None = None
    _buffer: str = ""
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _has_fields: bool = False
    _pending_cr: bool = False

    def feed(self, chunk: str) -> list[ServerSentEvent]:
        if self._pending_cr and chunk.startswith("\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        text = self._buffer + chunk
        events: list[ServerSentEvent] = []
        start = 0
        length = len(text)
        i = 0
        while i < length:
            ch = text[i]
            if ch == "\r" or ch == "\n":
                line = text[start:i]
                if ch == "\r":
                    if i + 1 >= length:
                        self._pending_cr = True
                    elif text[i + 1] == "\n":
                        i += 1
                event = self._line(line)
                if event is not None:
                    events.append(event)
                start = i + 1
            i += 1
        self._buffer = text[start:]
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: what was not completed by a blank line is discarded.

        WHATWG: "If the file ends in the middle of an event, before the final empty line,
        the incomplete event is not dispatched." A stream cut mid-event (a dropped
        connection, a proxy timeout) must not deliver half an event as if it were whole,
        so nothing is returned; the list is kept for the callers' symmetry with ``feed``.
        """
        self._buffer = ""
        self._pending_cr = False
        self._event = ""
        self._data = []
        self._has_fields = False
        return []

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
            self._has_fields = True
        elif name == "data":
            self._data.append(value)
            self._has_fields = True
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
            self._has_fields = True
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._has_fields or not self._data:
            self._event = ""
            self._data = []
            self._has_fields = False
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self.last_event_id,
            retry=self.retry,
        )
        self._event = ""
        self._data = []
        self._has_fields = False
        return event
