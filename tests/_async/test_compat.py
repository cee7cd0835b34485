"""Drop-in details of the official SDK's surface that need a server: ``client.http``, the
foreground ``tag``, and git's refusal of empty identities and credentials."""

from __future__ import annotations

import json

import httpx
import pytest

from tests._async.clients import client_for
from tests.faultserver import FaultServer
from tests.reliability.fixtures import CID, KEY
from wrenn import AsyncWrennClient
from wrenn._async.commands import AsyncCommands
from wrenn._async.git import AsyncGit

pytestmark = pytest.mark.anyio


def _keys_sent(srv: FaultServer, url: str) -> list[tuple[str, str | None]]:
    """(listener host, X-API-Key) of every request the server got for one scenario URL."""
    return [(r.local[0], r.header("x-api-key")) for r in srv.requests(url)]


async def test_http_resolves_relative_urls_against_the_api_and_authenticates(
    srv: FaultServer,
) -> None:
    url = srv.url_for("ok")
    async with client_for(url) as client:
        response = await client.http.get("/v1/capsules")
        assert response.status_code == 200
        assert isinstance(response.json(), list)
        assert "x-api-key" not in client.http.headers  # added per request, never stored
        assert client.with_options(timeout=5.0).http is client.http
    [record] = srv.requests(url)
    assert record.path == "/v1/capsules"
    assert record.header("x-api-key") == KEY


async def test_http_sends_no_key_to_another_origin(srv: FaultServer) -> None:
    other = srv.url_for("ok", origin="other")
    async with client_for(srv.url_for("ok")) as client:
        response = await client.http.get(f"{other}/v1/capsules")
        assert response.status_code == 200
    [(host, key)] = _keys_sent(srv, other)
    assert host == srv.other_host and key is None


async def test_http_drops_the_key_on_a_followed_redirect_to_another_origin(
    srv: FaultServer,
) -> None:
    url = srv.url_for("redirect")
    async with client_for(url) as client:
        unfollowed = await client.http.get("/v1/capsules")
        assert unfollowed.status_code == 307  # not followed unless asked, as in httpx
        followed = await client.http.get("/v1/capsules", follow_redirects=True)
        assert followed.status_code == 200
    sent = _keys_sent(srv, url)
    assert sent[:2] == [(srv.host, KEY), (srv.host, KEY)]
    assert sent[2:] == [(srv.other_host, None)]


async def test_http_keeps_the_key_on_a_same_origin_redirect(srv: FaultServer) -> None:
    url = srv.url_for("redirect301")
    async with client_for(url) as client:
        response = await client.http.get("/v1/capsules", follow_redirects=True)
        assert response.status_code == 200
    assert _keys_sent(srv, url) == [(srv.host, KEY), (srv.host, KEY)]


async def test_a_caller_supplied_http_client_is_left_as_given(srv: FaultServer) -> None:
    url = srv.url_for("ok")
    async with httpx.AsyncClient() as http:
        async with AsyncWrennClient(api_key=KEY, base_url=url, http_client=http) as client:
            assert client.http is http
            assert await client.capsules.list()
        assert http.auth is None and str(http.base_url) == ""
    assert _keys_sent(srv, url) == [(srv.host, KEY)]


async def test_a_foreground_command_keeps_its_tag(srv: FaultServer) -> None:
    url = srv.url_for("wsok")
    async with client_for(url) as client:
        commands = AsyncCommands(client, CID)
        result = await commands.run("echo hi", tag="build-7")
        assert result.exit_code == 0 and result.stdout == "hello\n"
        untagged = await commands.run("echo hi")
        assert untagged.exit_code == 0
        with pytest.raises(ValueError):
            await commands.run("echo hi", tag="")
    starts = [json.loads(e.data) for e in srv.ws_events(url) if e.kind == "text"]
    assert [s.get("tag") for s in starts] == ["build-7", None]
    assert all(s["type"] == "start" for s in starts)


async def test_git_timeout_none_means_the_default_as_in_the_official_sdk(
    srv: FaultServer,
) -> None:
    url = srv.url_for("wsok")
    async with client_for(url) as client:
        result = await AsyncGit(AsyncCommands(client, CID)).init("/root/repo", timeout=None)
        assert result.exit_code == 0
    [start] = [json.loads(e.data) for e in srv.ws_events(url) if e.kind == "text"]
    assert start["type"] == "start" and "init" in json.dumps(start)


@pytest.mark.parametrize(
    ("method", "args", "kwargs"),
    [
        ("configure_user", ("", "dev@example.com"), {}),
        ("configure_user", ("Dev", ""), {}),
        ("configure_user", ("", ""), {"scope": "local", "cwd": "/r"}),
        ("dangerously_authenticate", ("", "token"), {}),
        ("dangerously_authenticate", ("bot", ""), {}),
        ("clone", ("https://example.com/r.git",), {"password": "token"}),
        ("clone", ("https://example.com/r.git",), {"username": "bot"}),
        ("clone", ("https://example.com/r.git",), {"username": "", "password": "token"}),
        ("clone", ("https://example.com/r.git",), {"username": "bot", "password": ""}),
        (
            "clone",
            ("https://example.com/r.git",),
            {"username": "bot", "dangerously_store_credentials": True},
        ),
        ("push", (), {"username": "bot"}),
        ("push", (), {"password": "token"}),
        ("push", (), {"username": "bot", "password": ""}),
        ("pull", (), {"username": "bot"}),
        ("pull", (), {"password": "token"}),
        ("pull", (), {"username": "", "password": "token"}),
    ],
)
async def test_git_refuses_empty_identities_and_half_credentials_before_running(
    srv: FaultServer, method: str, args: tuple[str, ...], kwargs: dict[str, object]
) -> None:
    url = srv.url_for("wsok")
    async with client_for(url) as client:
        git = AsyncGit(AsyncCommands(client, CID))
        with pytest.raises(ValueError):
            await getattr(git, method)(*args, **kwargs)
    assert srv.count(url) == 0  # refused before anything was sent
