"""The host end of the agent channel against a hostile guest, without QEMU.

The guest runs untrusted code, so its agent may send anything: an endless line,
output past the cap, one byte at a time, JSON of the wrong shape.  Each test
plays such an agent on the far end of a socketpair and checks that the host fails
the request with an ``AgentError`` in bounded time and memory.  The real guest
agent's own output cap is tested over a socketpair too.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from wrenn.local._vm import guest_agent
from wrenn.local._vm._agent import MAX_EXEC_OUTPUT, MAX_FRAME_BYTES, AgentChannel, AgentError

Request = dict[str, object]
# Given one request and the guest's socket, the bytes to answer with (None: none).
Responder = Callable[[Request, socket.socket], bytes | None]


class HostileAgent:
    """Reads the host's requests and answers each with whatever ``respond`` makes."""

    def __init__(self, respond: Responder, *, read: bool = True) -> None:
        self.host, self.guest = socket.socketpair()
        self._respond = respond
        self._thread = threading.Thread(target=self._serve if read else _idle, daemon=True)
        self._thread.start()
        self.channel = AgentChannel(self.host)

    def _serve(self) -> None:
        try:
            with self.guest.makefile("rb") as lines:
                for line in lines:
                    answer = self._respond(json.loads(line), self.guest)
                    if answer:
                        self.guest.sendall(answer)
        except OSError:
            pass  # the test closed its end

    def close(self) -> None:
        self.channel.close()
        self.guest.close()
        self._thread.join(timeout=10.0)


def _idle() -> None:
    return None


@pytest.fixture
def hostile() -> Iterator[Callable[..., AgentChannel]]:
    agents: list[HostileAgent] = []

    def start(respond: Responder, *, read: bool = True) -> AgentChannel:
        agents.append(HostileAgent(respond, read=read))
        return agents[-1].channel

    yield start
    for agent in agents:
        agent.close()


def _answer(request: Request, **fields: object) -> bytes:
    return json.dumps({"id": request["id"], "ok": True, **fields}).encode() + b"\n"


def _exec_answer(request: Request, **fields: object) -> bytes:
    return _answer(request, **{"exit_code": 0, "stdout": "", "stderr": "", **fields})


def test_an_endless_line_breaks_the_channel_without_growing(
    hostile: Callable[..., AgentChannel],
) -> None:
    def endless(request: Request, guest: socket.socket) -> None:
        while True:  # until the host closes its end: no newline, ever
            guest.sendall(b"x" * (1 << 20))

    channel = hostile(endless)
    started = time.monotonic()
    with pytest.raises(AgentError, match=f"over {MAX_FRAME_BYTES} bytes"):
        channel.exec(["true"], timeout=30.0)
    assert time.monotonic() - started < 10.0  # stopped by the cap, not the 40 s deadline
    assert channel.broken and len(channel._buffer) == 0
    with pytest.raises(AgentError, match="broken"):
        channel.exec(["true"], timeout=30.0)


def test_output_past_the_cap_is_cut_by_the_host_too(
    hostile: Callable[..., AgentChannel],
) -> None:
    # A hostile agent ignores the guest-side cap and says nothing of it.
    big = base64.b64encode(b"o" * (2 * MAX_EXEC_OUTPUT)).decode()
    just_over = base64.b64encode(b"e" * (MAX_EXEC_OUTPUT + 1)).decode()
    channel = hostile(lambda request, _: _exec_answer(request, stdout=big, stderr=just_over))
    result = channel.exec(["true"])
    assert result.truncated
    assert result.stdout == b"o" * MAX_EXEC_OUTPUT and result.stderr == b"e" * MAX_EXEC_OUTPUT


def test_padding_inside_base64_does_not_get_past_the_cap(
    hostile: Callable[..., AgentChannel],
) -> None:
    # Strict decoding: no whitespace or junk that a lenient decoder would skip.
    for junk in ("AAAA\nAAAA", "not base64!", "QQ==QQ=="):
        channel = hostile(lambda request, _, junk=junk: _exec_answer(request, stdout=junk))
        with pytest.raises(AgentError, match="invalid base64"):
            channel.exec(["true"])


def test_the_real_guest_agent_cuts_output_at_the_cap() -> None:
    host, guest = socket.socketpair()
    agent = guest_agent.Agent(guest.fileno())
    thread = threading.Thread(target=agent.serve, kwargs={"return_on_eof": True}, daemon=True)
    thread.start()
    channel = AgentChannel(host)
    try:
        script = f"head -c {3 * MAX_EXEC_OUTPUT} /dev/zero; echo done >&2"
        result = channel.exec(["sh", "-c", script], timeout=30.0)
        assert result.truncated and result.exit_code == 0
        assert result.stdout == bytes(MAX_EXEC_OUTPUT) and result.stderr == b"done\n"
        small = channel.exec(["echo", "hi"])
        assert not small.truncated and small.stdout == b"hi\n"
    finally:
        host.shutdown(socket.SHUT_WR)
        thread.join(timeout=10.0)
        channel.close()
        guest.close()
    assert guest_agent.MAX_OUTPUT_BYTES == MAX_EXEC_OUTPUT  # the two ends agree


def test_a_dripping_guest_is_cut_off_at_the_total_deadline(
    hostile: Callable[..., AgentChannel],
) -> None:
    def drip(request: Request, guest: socket.socket) -> None:
        while True:  # each byte well inside any per-read timeout
            guest.sendall(b"{")
            time.sleep(0.01)

    channel = hostile(drip)
    started = time.monotonic()
    with pytest.raises(AgentError, match=r"no answer within 1\.0 s"):
        channel.request({"op": "ping"}, timeout=1.0)
    assert time.monotonic() - started < 3.0


def test_stale_answers_in_a_flood_do_not_stretch_the_deadline(
    hostile: Callable[..., AgentChannel],
) -> None:
    def flood(request: Request, guest: socket.socket) -> None:
        stale = json.dumps({"id": 0 + 1, "ok": True}).encode() + b"\n"
        for _ in range(100_000):
            guest.sendall(stale * 100)

    channel = hostile(flood)
    channel._next_id = 2  # so id 1 is a stale answer, not a never-sent one
    started = time.monotonic()
    with pytest.raises(AgentError, match=r"no answer within 1\.0 s"):
        channel.request({"op": "ping"}, timeout=1.0)
    assert time.monotonic() - started < 3.0


def test_a_guest_that_stops_reading_cannot_block_a_send(
    hostile: Callable[..., AgentChannel],
) -> None:
    channel = hostile(lambda request, _: None, read=False)
    started = time.monotonic()
    with pytest.raises(AgentError, match="send failed"):
        channel.request({"op": "exec", "env": {"BIG": "x" * (16 << 20)}}, timeout=0.5)
    assert time.monotonic() - started < 3.0
    assert channel.broken  # part of a line may be out: the stream is out of step


def test_a_request_without_answer_does_not_hold_up_the_others(
    hostile: Callable[..., AgentChannel],
) -> None:
    # The channel is multiplexed: a request waits on its own answer, not on a lock.
    def answer_all_but_the_first(request: Request, _: socket.socket) -> bytes | None:
        return None if request["id"] == 1 else _answer(request, pid=7)

    channel = hostile(answer_all_but_the_first)
    holder = threading.Thread(target=_swallow, args=(channel.request, {"op": "ping"}, 3.0))
    holder.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert channel.request({"op": "ping"}, timeout=2.0)["pid"] == 7
    assert time.monotonic() - started < 1.0
    holder.join(timeout=10.0)


def _swallow(call: Callable[..., object], *args: object) -> None:
    try:
        call(*args)
    except AgentError:
        pass


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[1, 2]\n", "not a JSON object"),
        (b"not json\n", "not a JSON object"),
        (b"[" * 200_000 + b"\n", "not a JSON object"),  # too deep for json's recursion
        (b'{"ok": true}\n', "'id' is not an int"),
        (b'{"id": "1", "ok": true}\n', "'id' is not an int"),
        (b'{"id": [1], "ok": true}\n', "'id' is not an int"),
        (b'{"id": true, "ok": true}\n', "'id' is not an int"),
        (b'{"id": 999, "ok": true}\n', "id 999, never sent"),
        (b'{"id": -1, "ok": true}\n', "never sent"),
        (b'{"id": 1' + b"0" * 4000 + b', "ok": true}\n', "never sent"),
        (b'{"id": 1, "ok": false, "error": {"deep": [1]}}\n', "{'deep': \\[1\\]}"),
        (b'{"id": 1, "ok": true}\n', "'exit_code' is not a int"),
        (b'{"id": 1, "ok": true, "exit_code": "0"}\n', "'exit_code' is not a int"),
        (b'{"id": 1, "ok": true, "exit_code": 0.5}\n', "'exit_code' is not a int"),
        (b'{"id": 1, "ok": true, "exit_code": ' + b"9" * 4000 + b"}\n", "out of range"),
        (b'{"id": 1, "ok": true, "exit_code": 0, "stderr": ""}\n', "'stdout' is not a str"),
        (b'{"id": 1, "ok": true, "exit_code": 0, "stdout": 5, "stderr": ""}\n', "'stdout'"),
        (b'{"id": 1, "ok": true, "exit_code": 0, "stdout": "", "stderr": null}\n', "'stderr'"),
    ],
)
def test_a_malformed_answer_is_an_agent_error(
    hostile: Callable[..., AgentChannel], line: bytes, error: str
) -> None:
    channel = hostile(lambda request, _: line)
    with pytest.raises(AgentError, match=error):
        channel.exec(["true"], timeout=5.0)


@pytest.mark.parametrize(
    "line",
    [b"[1]\n", b'{"id": [1], "ok": true}\n', b"\xff\xfe\n", b'{"id": {}, "ok": true}\n'],
)
def test_the_handshake_skips_junk_and_still_finds_its_pong(
    hostile: Callable[..., AgentChannel], line: bytes
) -> None:
    channel = hostile(lambda request, _: line + _answer(request, pid=1, time_ns=0))
    assert channel.handshake(timeout=5.0)["pid"] == 1


def test_a_broken_channel_fails_every_waiter_at_once(
    hostile: Callable[..., AgentChannel],
) -> None:
    seen = threading.Semaphore(0)
    guests: list[socket.socket] = []

    def never_answer(request: Request, guest: socket.socket) -> None:
        guests.append(guest)
        seen.release()

    channel = hostile(never_answer)
    errors: list[str] = []
    waiters = [
        threading.Thread(target=_record, args=(errors, channel.request, {"op": "ping"}, 60.0))
        for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    for _ in waiters:
        assert seen.acquire(timeout=5.0)
    started = time.monotonic()
    guests[0].shutdown(socket.SHUT_RDWR)  # QEMU went away
    for waiter in waiters:
        waiter.join(timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert errors == ["agent connection closed by QEMU"] * 3
    assert channel.broken
    with pytest.raises(AgentError, match="broken"):
        channel.request({"op": "ping"}, timeout=5.0)


def _record(errors: list[str], call: Callable[..., object], *args: object) -> None:
    try:
        call(*args)
    except AgentError as exc:
        errors.append(str(exc))
