"""A new connection to a kernel sees the result of its very first cell.

A zmq SUB socket misses what is published before its subscription reaches the kernel
(the "slow joiner"): without waiting for it, a client that runs a cell right after
connecting could get the cell's idle status but not its result, as a loaded CI machine
once showed. The server confirms the subscription before it accepts the WebSocket.
"""

from __future__ import annotations

import pytest

from wrenn.code_runner import Capsule
from wrenn.local import LocalServer, _kernels

pytestmark = pytest.mark.local

CONNECTIONS = 12


def _keys(server: LocalServer) -> dict[str, str]:
    return {"api_key": server.api_key, "base_url": server.base_url}


def test_every_new_connection_gets_its_first_cells_result(local_server: LocalServer) -> None:
    with Capsule(**_keys(local_server)) as capsule:
        assert capsule.run_code("x = 21").error is None
        for _ in range(CONNECTIONS):
            attached = Capsule.connect(capsule.capsule_id, **_keys(local_server))
            try:
                assert attached.run_code("x * 2").text == "42"
            finally:
                attached.close()  # the kernel connection and the client


def test_the_subscription_is_confirmed_by_an_iopub_message(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    confirmed: list[bool] = []
    original = _kernels.KernelChannels.subscribed

    async def spy(self: _kernels.KernelChannels, timeout: float) -> bool:
        result = await original(self, timeout)
        confirmed.append(result)
        return result

    monkeypatch.setattr(_kernels.KernelChannels, "subscribed", spy)
    with Capsule(**_keys(local_server)) as capsule:
        assert capsule.run_code("1 + 1").text == "2"
    assert confirmed == [True]
