"""The code runner end to end: wrenn.local's kernel behind its port proxy, over a real socket."""

from __future__ import annotations

import time

import pytest

from wrenn import WrennNotFoundError
from wrenn._compat import IS_ASYNC
from wrenn.code_runner import (
    DEFAULT_KERNEL,
    DEFAULT_TEMPLATE,
    AsyncCapsule,
    Execution,
    ExecutionError,
    Result,
)
from wrenn.local import LocalServer

pytestmark = pytest.mark.anyio


def keys(server: LocalServer) -> dict[str, str]:
    return {"api_key": server.api_key, "base_url": server.base_url}


async def test_results_logs_errors_and_state_between_cells(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        assert capsule.info is not None and capsule.info.template == DEFAULT_TEMPLATE
        first = await capsule.run_code("x = 21\nprint('hello')\nx * 2")
        assert isinstance(first, Execution)
        assert first.text == "42" and first.error is None and not first.timed_out
        assert first.logs.stdout == ["hello\n"] and first.logs.stderr == []
        assert first.execution_count == 1
        assert [r.is_main_result for r in first.results] == [True]

        second = await capsule.run_code("x + 1")  # the kernel keeps its variables
        assert second.text == "22" and second.execution_count == 2

        failed = await capsule.run_code("import sys\nprint('warn', file=sys.stderr)\n1 / 0")
        assert failed.error is not None and failed.error.name == "ZeroDivisionError"
        assert "division by zero" in failed.error.value
        assert "ZeroDivisionError" in failed.error.traceback
        assert failed.logs.stderr == ["warn\n"] and failed.text is None
        assert capsule.kernel_id is not None


async def test_callbacks_and_rich_results(local_server: LocalServer) -> None:
    seen: dict[str, list[object]] = {"result": [], "stdout": [], "stderr": [], "error": []}
    code = (
        "from IPython.display import HTML, display\n"
        "display(HTML('<b>bold</b>'))\n"
        "print('out')\n"
        "raise KeyError('k')"
    )
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        execution = await capsule.run_code(
            code,
            on_result=seen["result"].append,
            on_stdout=seen["stdout"].append,
            on_stderr=seen["stderr"].append,
            on_error=seen["error"].append,
        )
    (result,) = execution.results
    assert isinstance(result, Result) and not result.is_main_result
    assert result.html == "<b>bold</b>" and "html" in result.formats()
    assert seen["result"] == [result] and seen["stdout"] == ["out\n"]
    assert seen["error"] == [execution.error]
    assert isinstance(execution.error, ExecutionError) and execution.error.name == "KeyError"


async def test_timeout_interrupts_the_cell_and_keeps_the_kernel(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        await capsule.run_code("kept = 'yes'")
        slow = "import time\nprint('started', flush=True)\nfor _ in range(300): time.sleep(0.1)\nfinished = True"
        execution = await capsule.run_code(slow, timeout=1)
        assert execution.timed_out
        assert execution.error is not None and execution.error.name == "Timeout"
        assert execution.logs.stdout == ["started\n"]  # the output before the timeout is kept
        # Were the cell still running, this one would queue behind it for 30 s and then
        # see `finished`; an interrupted cell never gets there.
        after = await capsule.run_code("(kept, 'finished' in globals())", timeout=10)
        assert after.error is None and after.text == "('yes', False)"


async def test_a_second_capsule_object_finds_the_running_kernel(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        await capsule.run_code("shared = 7")
        attached = await AsyncCapsule.connect(capsule.capsule_id, **keys(local_server))
        try:
            assert (await attached.run_code("shared * 6")).text == "42"
            assert attached.kernel_id == capsule.kernel_id
        finally:
            await attached.aclose()  # the kernel connection and the client


async def test_a_kernel_that_dies_is_replaced(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        await capsule.run_code("before = 1")
        first_kernel = capsule.kernel_id
        died = await capsule.run_code("import os\nos._exit(3)", timeout=20)
        assert died.timed_out
        assert died.error is not None and died.error.name == "Disconnected"
        again = await capsule.run_code("'before' in globals()")
        assert again.text == "False"  # a fresh kernel
        assert capsule.kernel_id != first_kernel


async def test_close_kernel_connection_releases_the_kernel_connection_only(
    local_server: LocalServer,
) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        await capsule.run_code("y = 5")
        await capsule.close_kernel_connection()
        await capsule.close_kernel_connection()  # idempotent
        assert capsule._socket is None
        # The capsule and its client still work, and so does the next cell.
        assert await capsule.is_running()
        assert (await capsule.run_code("y")).text == "5"


async def test_closing_ends_the_kernel_connection_and_the_client(
    local_server: LocalServer,
) -> None:
    capsule = await AsyncCapsule.create(**keys(local_server))
    try:
        await capsule.run_code("y = 5")
        await capsule.aclose()  # one meaning on every capsule class
        assert capsule._socket is None
        assert capsule.client.is_closed
        # The capsule keeps running: another object attaches to it and its kernel.
        async with await AsyncCapsule.connect(capsule.capsule_id, **keys(local_server)) as again:
            assert (await again.run_code("y")).text == "5"
    finally:
        await AsyncCapsule.destroy(capsule.capsule_id, **keys(local_server))


if IS_ASYNC:

    async def test_close_is_the_official_async_spelling_of_aclose(
        local_server: LocalServer,
    ) -> None:
        capsule = await AsyncCapsule.create(**keys(local_server))
        try:
            await capsule.run_code("y = 5")
            await capsule.close()
            assert capsule._socket is None
            assert capsule.client.is_closed
        finally:
            await AsyncCapsule.destroy(capsule.capsule_id, **keys(local_server))


async def test_bad_arguments_fail_before_any_request(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        with pytest.raises(ValueError, match="not supported"):
            await capsule.run_code("1", language="r")
        with pytest.raises(ValueError, match="timeout"):
            await capsule.run_code("1", timeout=0)
        with pytest.raises(TypeError):
            await capsule.run_code(b"1")  # type: ignore[arg-type]
        assert capsule.kernel_id is None
    with pytest.raises(ValueError, match="kernel"):
        await AsyncCapsule.create(kernel="", **keys(local_server))


async def test_a_capsule_without_a_kernel_fails_at_once(local_server: LocalServer) -> None:
    # A minimal capsule has no Jupyter server: a clear error, not a 30 s wait.
    async with await AsyncCapsule.create(template="minimal", **keys(local_server)) as capsule:
        with pytest.raises(WrennNotFoundError, match="8888"):
            await capsule.run_code("1", jupyter_timeout=30)


async def test_unknown_kernelspec_is_refused(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(kernel="julia-1.9", **keys(local_server)) as capsule:
        with pytest.raises(WrennNotFoundError, match="julia"):
            await capsule.run_code("1")
    assert DEFAULT_KERNEL == "wrenn"


async def test_the_team_key_never_goes_to_the_capsule(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        # wrenn.local refuses (403) any capsule-port request carrying the key, so this
        # working at all shows none was sent; the client's headers say the same.
        assert (await capsule.run_code("1 + 1")).text == "2"
        headers = {k.lower() for k in capsule._jupyter_endpoint()[1]}
        assert "x-api-key" not in headers and "authorization" not in headers


async def shut_down(capsule: AsyncCapsule, kernel_id: str | None) -> None:
    """Shut a kernel down through the Jupyter server, as another client of it would."""
    from wrenn._async import _jupyter

    assert kernel_id is not None
    path, deadline = f"/api/kernels/{kernel_id}", time.monotonic() + 10
    await _jupyter.request(capsule._client, capsule._jupyter_endpoint(), "DELETE", path, deadline)


async def test_a_kernel_shut_down_between_cells_is_replaced(local_server: LocalServer) -> None:
    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        await capsule.run_code("z = 1")
        await shut_down(capsule, capsule.kernel_id)
        # The kept connection was closed by the server: the cell goes to a new kernel
        # instead of reporting a disconnection for a cell that never ran.
        execution = await capsule.run_code("'z' in globals()")
        assert execution.error is None and execution.text == "False"


async def test_a_cell_sent_into_a_shut_down_kernels_closing_connection_runs_on_a_new_one(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race the check before sending can lose: the kernel is deleted, and its
    # connection closes only after the cell went into it.
    from wrenn._async import _jupyter

    async def looks_open(socket: object) -> bool:
        return True

    async with await AsyncCapsule.create(**keys(local_server)) as capsule:
        await capsule.run_code("z = 1")
        old_kernel = capsule.kernel_id
        await shut_down(capsule, old_kernel)
        monkeypatch.setattr(_jupyter, "still_open", looks_open)
        execution = await capsule.run_code("'z' in globals()")
        assert execution.error is None and execution.text == "False"
        assert capsule.kernel_id not in (None, old_kernel)
