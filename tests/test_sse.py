"""The server-sent events decoder against the WHATWG parsing rules."""

from __future__ import annotations

from wrenn._sse import SSEDecoder


def decode_all(*chunks: str) -> list[tuple[str, str, str | None]]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return [(e.event, e.data, e.id) for e in events]


def test_basic_event_and_comment() -> None:
    assert decode_all(": keepalive\n\nevent: a\ndata: {}\n\n") == [("a", "{}", None)]


def test_every_line_ending_and_split_crlf() -> None:
    assert decode_all("data: 1\r\n\r\ndata: 2\r\rdata: 3\n\n") == [
        ("message", "1", None),
        ("message", "2", None),
        ("message", "3", None),
    ]
    # a CRLF split across two chunks is one line ending, not two
    assert decode_all("data: x\r", "\n\r\n") == [("message", "x", None)]


def test_other_unicode_line_breaks_are_data() -> None:
    assert decode_all("data: a\u2028b\x0bc\n\n") == [("message", "a\u2028b\x0bc", None)]


def test_one_leading_space_is_removed() -> None:
    assert decode_all("data:  two\n\ndata:none\n\n") == [
        ("message", " two", None),
        ("message", "none", None),
    ]


def test_multiline_data_and_ids_and_retry() -> None:
    decoder = SSEDecoder()
    events = decoder.feed("id: 5\nretry: 3000\ndata: a\ndata: b\n\n")
    assert [(e.data, e.id) for e in events] == [("a\nb", "5")]
    assert decoder.retry == 3000
    assert decoder.last_event_id == "5"


def test_an_event_the_stream_ends_before_completing_is_discarded() -> None:
    # WHATWG: an event not terminated by a blank line at end of stream is not dispatched.
    assert decode_all("data: last") == []
    assert decode_all("data: whole\n\ndata: half\n") == [("message", "whole", None)]
    assert decode_all('event: capsule.create\ndata: {"truncat') == []
    decoder = SSEDecoder()
    assert decoder.feed("data: a\r") == []
    assert decoder.close() == []
    # the decoder is clean afterwards: nothing of the cut event leaks into the next one
    assert [e.data for e in decoder.feed("data: b\n\n")] == ["b"]


def test_events_split_across_arbitrary_chunks() -> None:
    text = 'event: capsule.create\ndata: {"a": 1}\n\n'
    assert decode_all(*text) == [("capsule.create", '{"a": 1}', None)]
