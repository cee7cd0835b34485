"""Where the timeout errors sit in the error tree, and what that means to callers."""

from __future__ import annotations

import pytest

from wrenn import (
    WrennCommandTimeoutError,
    WrennConnectionError,
    WrennError,
    WrennStreamTimeoutError,
    WrennTimeoutError,
)
from wrenn.cli._app import EXIT_CONNECTION, EXIT_TIMEOUT, exit_code_of


def _command_timeout() -> WrennCommandTimeoutError:
    return WrennCommandTimeoutError("ran past 2 s", stdout="before\n", stderr="", pid=7)


def test_a_command_timeout_is_not_a_connection_error() -> None:
    # A command that ran long is no transport failure: handlers of connection trouble
    # (and anything retrying on it) must not see it.
    with pytest.raises(WrennCommandTimeoutError):
        try:
            raise _command_timeout()
        except WrennConnectionError:
            pytest.fail("except WrennConnectionError caught a command timeout")
    assert not issubclass(WrennCommandTimeoutError, WrennConnectionError)
    assert not issubclass(WrennCommandTimeoutError, WrennTimeoutError)


@pytest.mark.parametrize("handler", [TimeoutError, WrennError])
def test_a_command_timeout_is_a_timeout_error_and_a_wrenn_error(
    handler: type[BaseException],
) -> None:
    try:
        raise _command_timeout()
    except handler as caught:
        assert isinstance(caught, WrennCommandTimeoutError)
        assert caught.code == "command_timeout"
        assert (caught.message, caught.stdout, caught.pid) == ("ran past 2 s", "before\n", 7)
        assert str(caught) == "ran past 2 s"


def test_transport_timeouts_stay_in_the_connection_branch() -> None:
    for error in (WrennTimeoutError("slow server"), WrennStreamTimeoutError("silent stream")):
        assert isinstance(error, WrennConnectionError)
        assert isinstance(error, TimeoutError)
        assert error.request_sent is True


def test_the_cli_exits_with_the_timeout_code_for_both_kinds() -> None:
    assert exit_code_of(_command_timeout()) == (EXIT_TIMEOUT, "timeout")
    assert exit_code_of(WrennTimeoutError("slow server")) == (EXIT_TIMEOUT, "timeout")
    assert exit_code_of(WrennConnectionError("refused")) == (EXIT_CONNECTION, "connection")
