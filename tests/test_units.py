"""Pure helpers: argument validation, terminal frames, output buffers, handle_response, logging setup."""

from __future__ import annotations

import datetime as dt
import logging

import httpx
import pytest

from wrenn import WrennConflictError, WrennResponseValidationError
from wrenn._logs import _configure_from_env, logger
from wrenn._process import (
    OutputBuffer,
    StreamEvent,
    StreamStdoutEvent,
    parse_stream_frame,
    shell_argv,
)
from wrenn._pty import PtyEventType, parse_pty_message
from wrenn._validate import (
    optional_date,
    optional_int,
    optional_str,
    positive_seconds,
    string_list,
    string_map,
)
from wrenn.exceptions import handle_response


def test_validators() -> None:
    assert optional_int(None, "x") is None and optional_int(3, "x") == 3
    with pytest.raises(TypeError):
        optional_int(True, "x")
    with pytest.raises(ValueError):
        optional_int(0, "x", minimum=1)
    assert optional_str("a", "x") == "a"
    with pytest.raises(ValueError):
        optional_str("", "x")
    with pytest.raises(TypeError):
        optional_str(1, "x")
    assert optional_date(dt.date(2026, 1, 2), "d") == "2026-01-02"
    assert optional_date(dt.datetime(2026, 1, 2, 3, 4), "d") == "2026-01-02"
    with pytest.raises(ValueError):
        optional_date("2026-13-01", "d")
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            positive_seconds(bad, "t")
    with pytest.raises(TypeError):
        positive_seconds("1", "t")
    assert string_map({"a": "b"}, "m") == {"a": "b"}
    with pytest.raises(TypeError):
        string_map({"a": 1}, "m")
    with pytest.raises(TypeError):
        string_map(["a"], "m")
    assert string_list(("a", "b"), "l") == ["a", "b"]
    with pytest.raises(TypeError):
        string_list("ab", "l")
    with pytest.raises(TypeError):
        string_list([1], "l")


def test_terminal_frames_in_both_protocols() -> None:
    assert parse_pty_message(b"raw").data == b"raw"
    legacy = parse_pty_message('{"type":"output","data":"aGk="}')
    assert legacy.type is PtyEventType.output and legacy.data == b"hi"
    assert parse_pty_message('{"type":"output","data":"not base64!"}').data == b"not base64!"
    started = parse_pty_message('{"type":"started","tag":"pty-1","pid":7}')
    assert (started.tag, started.pid) == ("pty-1", 7)
    exited = parse_pty_message('{"type":"exit","exit_code":3}')
    assert exited.exit_code == 3
    error = parse_pty_message('{"type":"error","data":"boom","fatal":true}')
    assert error.fatal is True and error.data == "boom"
    unknown = parse_pty_message('{"type":"resized"}')
    assert unknown.type == "resized" and str(unknown.type) == "resized"
    for bad in ("{", "[]"):
        with pytest.raises(ValueError):
            parse_pty_message(bad)


def test_stream_frames_and_events() -> None:
    assert parse_stream_frame({"type": "stdout", "data": "x"}) == StreamStdoutEvent("x")
    assert parse_stream_frame({"type": "exit"}).exit_code == -1  # type: ignore[attr-defined]
    assert parse_stream_frame({"type": "exit", "exit_code": True}).exit_code == -1  # type: ignore[attr-defined]
    odd = parse_stream_frame({"type": "weird"})
    assert type(odd) is StreamEvent and odd.type == "weird"
    assert repr(odd) == "StreamEvent(type='weird')"
    assert repr(StreamStdoutEvent("a")) == "StreamStdoutEvent(data='a')"
    assert StreamStdoutEvent("a") != StreamStdoutEvent("b")


def test_output_buffer_keeps_head_and_tail() -> None:
    buffer = OutputBuffer(budget=10)
    for chunk in ["abc", "defgh", "ijklmnopqrstuvwxyz"]:
        buffer.append(chunk)
    text = buffer.text()
    assert text.startswith("abcde") and text.endswith("vwxyz")
    assert buffer.dropped == 26 - 10
    assert "16 characters dropped" in text
    small = OutputBuffer(budget=100)
    small.append("hello")
    assert small.text() == "hello" and small.dropped == 0


def test_shell_argv_forms() -> None:
    assert shell_argv("echo hi", envs=None, cwd=None) == ("/bin/sh", ["-c", "echo hi"])
    assert shell_argv(["ls", "-l"], envs=None, cwd=None) == ("ls", ["-l"])
    program, args = shell_argv(["ls"], envs={"A": "1 2"}, cwd="/tmp")
    assert program == "/bin/sh" and args[-2:] == ["sh", "ls"]
    assert "export A='1 2'" in args[1] and "cd -- /tmp" in args[1]
    with pytest.raises(ValueError):
        shell_argv("  ", envs=None, cwd=None)
    with pytest.raises(TypeError):
        shell_argv([], envs=None, cwd=None)
    with pytest.raises(ValueError):
        shell_argv("x", envs={"1A": "x"}, cwd=None)


def test_handle_response_like_the_official_sdk() -> None:
    def response(status: int, content: bytes) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"content-type": "application/json"})

    assert handle_response(response(200, b'{"a": 1}')) == {"a": 1}
    assert handle_response(response(200, b"[1]")) == [1]
    assert handle_response(response(204, b"")) == {}
    with pytest.raises(WrennConflictError):
        handle_response(response(409, b'{"error":{"code":"conflict","message":"x"}}'))
    for bad in (b"{nope", b"3"):
        with pytest.raises(WrennResponseValidationError):
            handle_response(response(200, bad))


def test_wrenn_log_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    before_handlers, before_level = list(logger.handlers), logger.level
    try:
        monkeypatch.setenv("WRENN_LOG", "debug")
        _configure_from_env()
        _configure_from_env()  # idempotent: one handler
        assert logger.level == logging.DEBUG
        assert sum(getattr(h, "_wrenn_env", False) for h in logger.handlers) == 1
        monkeypatch.setenv("WRENN_LOG", "info")
        _configure_from_env()
        assert logger.level == logging.INFO
    finally:
        logger.handlers[:] = before_handlers
        logger.setLevel(before_level)
