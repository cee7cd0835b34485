"""The blocking Capsule(...) creates a capsule, as in the official SDK; AsyncCapsule(...) says to await."""

from __future__ import annotations

import anyio
import pytest

from wrenn import AsyncCapsule, AsyncWrennClient, Capsule, WrennClient, WrennNotFoundError
from wrenn.local import LocalServer
from wrenn.models import Status


def test_blocking_constructor_creates_and_waits(local_server: LocalServer) -> None:
    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    with Capsule(template="minimal", wait=True, **keys) as capsule:
        assert capsule.info is not None and capsule.info.status is Status.running
        assert capsule.git is not None and capsule.client.base_url == local_server.base_url
        assert repr(capsule).startswith("<Capsule cl-")
    assert Capsule.get_info(capsule.capsule_id, **keys).status is Status.stopped


def test_failed_creation_closes_the_client(local_server: LocalServer) -> None:
    with pytest.raises(WrennNotFoundError):
        Capsule(
            template="no-such-template",
            api_key=local_server.api_key,
            base_url=local_server.base_url,
        )


def test_blocking_constructor_on_a_given_client_leaves_it_open(local_server: LocalServer) -> None:
    from wrenn import code_runner

    with WrennClient(api_key=local_server.api_key, base_url=local_server.base_url) as client:
        with Capsule(template="minimal", client=client) as first, Capsule(client=client) as second:
            assert first.client is client and second.client is client
            assert first.client._transitions is second.client._transitions
        assert not client.is_closed
        assert client.capsules.get(first.capsule_id).status is Status.stopped
        with code_runner.Capsule(client=client) as runner:
            assert runner.run_code("6 * 7").text == "42"
        assert not client.is_closed
        # A create that fails leaves the given client open too; key and client clash.
        with pytest.raises(WrennNotFoundError):
            Capsule(template="no-such-template", client=client)
        with pytest.raises(ValueError, match="client= or api_key=/base_url="):
            Capsule(client=client, api_key=local_server.api_key)
        with pytest.raises(ValueError, match="client= or api_key=/base_url="):
            code_runner.Capsule(client=client, base_url=local_server.base_url)
        async_client = AsyncWrennClient(
            api_key=local_server.api_key, base_url=local_server.base_url
        )
        with pytest.raises(
            TypeError, match=r"a wrenn client \(WrennClient\), not AsyncWrennClient"
        ):
            Capsule(client=async_client)  # type: ignore[arg-type]
        anyio.run(async_client.aclose)
        assert not client.is_closed and isinstance(client.capsules.list(), list)


def test_async_constructor_refuses_to_create_without_await() -> None:
    with pytest.raises(TypeError, match=r"await AsyncCapsule\.create"):
        AsyncCapsule(template="minimal")


def test_class_level_lifecycle(local_server: LocalServer) -> None:
    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    capsule = Capsule.create(**keys)
    try:
        assert Capsule.pause(capsule.capsule_id, wait=True, **keys).status is Status.paused
        assert Capsule.resume(capsule.capsule_id, wait=True, **keys).status is Status.running
        assert capsule.pause(wait=True).status is Status.paused
        assert capsule.resume(wait=True).status is Status.running
    finally:
        Capsule.destroy(capsule.capsule_id, wait=True, **keys)
        capsule.close()
    assert Capsule.get_info(capsule.capsule_id, **keys).status is Status.stopped


def test_code_runner_constructors(local_server: LocalServer) -> None:
    from wrenn import code_runner

    keys = {"api_key": local_server.api_key, "base_url": local_server.base_url}
    with code_runner.Capsule(kernel="wrenn", wait=True, **keys) as capsule:
        assert capsule.info is not None and capsule.info.template == "code-runner-beta"
        assert capsule.run_code("6 * 7").text == "42"
    with pytest.raises(TypeError, match="await"):
        code_runner.AsyncCapsule(kernel="wrenn")
    with pytest.raises(ValueError, match="kernel"):
        code_runner.Capsule(kernel=" ", **keys)
