"""The clients under test, each behind the same tiny interface.

Every adapter offers ``get(id)``, ``create()``, ``list()`` and ``close()`` (awaitable
in the async ones), and each makes exactly the call a user of that library would
write. Libraries are imported inside the factories: a worker imports only the one it
measures, and the official ``wrenn`` is only ever imported inside its own venv, where
our ``wrenn`` does not exist.

Pools: our SDK and raw httpx get the same explicit ``httpx.Limits`` (``pool``
connections, all kept alive). The official SDK has no pool option, so it runs with
the httpx defaults it builds (100 connections, 20 kept alive), as its users get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CAPSULE_ID = "cl-0123456789abcdefghijklmno"


@dataclass(frozen=True)
class Variant:
    name: str
    venv: str  # "ours" or "official": which interpreter runs the worker
    mode: str  # "sync", "asyncio" or "trio"
    make: Callable[[str, str, int], Any]  # (base_url, api_key, pool) -> adapter

    @property
    def is_async(self) -> bool:
        return self.mode != "sync"


# --- our SDK -------------------------------------------------------------------------


def _ours_sync(base_url: str, api_key: str, pool: int) -> Any:
    import httpx

    from wrenn import WrennClient

    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    client = WrennClient(api_key=api_key, base_url=base_url, limits=limits)
    return _SdkSync(client)


def _ours_async(base_url: str, api_key: str, pool: int) -> Any:
    import httpx

    from wrenn import AsyncWrennClient

    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    client = AsyncWrennClient(api_key=api_key, base_url=base_url, limits=limits)
    return _SdkAsync(client)


# --- the official wrenn 0.3.0 (only importable in bench/.venv-official) ---------------


def _official_sync(base_url: str, api_key: str, pool: int) -> Any:
    from wrenn import WrennClient

    return _SdkSync(WrennClient(api_key=api_key, base_url=base_url))


def _official_async(base_url: str, api_key: str, pool: int) -> Any:
    from wrenn import AsyncWrennClient

    return _SdkAsync(AsyncWrennClient(api_key=api_key, base_url=base_url))


class _SdkSync:
    """Both SDKs share the call shape ``client.capsules.get/create/list``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.capsules = client.capsules

    def get(self, capsule_id: str) -> Any:
        return self.capsules.get(capsule_id)

    def create(self) -> Any:
        return self.capsules.create(template="minimal")

    def list(self) -> Any:
        return self.capsules.list()

    def close(self) -> None:
        self.client.close()


class _SdkAsync:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.capsules = client.capsules

    async def get(self, capsule_id: str) -> Any:
        return await self.capsules.get(capsule_id)

    async def create(self) -> Any:
        return await self.capsules.create(template="minimal")

    async def list(self) -> Any:
        return await self.capsules.list()

    async def close(self) -> None:
        await self.client.aclose()


# --- raw httpx + msgspec: what one would write without an SDK --------------------------


def _httpx_sync(base_url: str, api_key: str, pool: int) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    client = httpx.Client(base_url=base_url, headers={"X-API-Key": api_key}, limits=limits)
    return _HttpxSync(client)


def _httpx_async(base_url: str, api_key: str, pool: int) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    client = httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": api_key}, limits=limits)
    return _HttpxAsync(client)


_CREATE_BODY = b'{"template":"minimal"}'
_JSON = {"Content-Type": "application/json"}


def _checked(response: Any, status: int) -> bytes:
    if response.status_code != status:
        raise RuntimeError(f"unexpected status {response.status_code}")
    return response.content  # type: ignore[no-any-return]


class _HttpxSync:
    def __init__(self, client: Any) -> None:
        from shapes import list_decoder, one_decoder

        self.client, self.one, self.many = client, one_decoder, list_decoder

    def get(self, capsule_id: str) -> Any:
        return self.one.decode(_checked(self.client.get(f"/v1/capsules/{capsule_id}"), 200))

    def create(self) -> Any:
        response = self.client.post("/v1/capsules", content=_CREATE_BODY, headers=_JSON)
        return self.one.decode(_checked(response, 201))

    def list(self) -> Any:
        return self.many.decode(_checked(self.client.get("/v1/capsules"), 200))

    def close(self) -> None:
        self.client.close()


class _HttpxAsync:
    def __init__(self, client: Any) -> None:
        from shapes import list_decoder, one_decoder

        self.client, self.one, self.many = client, one_decoder, list_decoder

    async def get(self, capsule_id: str) -> Any:
        response = await self.client.get(f"/v1/capsules/{capsule_id}")
        return self.one.decode(_checked(response, 200))

    async def create(self) -> Any:
        response = await self.client.post("/v1/capsules", content=_CREATE_BODY, headers=_JSON)
        return self.one.decode(_checked(response, 201))

    async def list(self) -> Any:
        return self.many.decode(_checked(await self.client.get("/v1/capsules"), 200))

    async def close(self) -> None:
        await self.client.aclose()


# --- the raw-socket floor ------------------------------------------------------------------


class _FloorSync:
    def __init__(self, base_url: str, api_key: str, pool: int) -> None:
        import floor
        from shapes import list_decoder, one_decoder

        host, port, self.get_req = floor.build(
            "GET", f"{base_url}/v1/capsules/{CAPSULE_ID}", api_key
        )
        self.list_req = floor.build("GET", f"{base_url}/v1/capsules", api_key)[2]
        self.post_req = floor.build("POST", f"{base_url}/v1/capsules", api_key, _CREATE_BODY)[2]
        self.conn = floor.SyncFloor(host, port)
        self.one, self.many = one_decoder, list_decoder

    def _call(self, request: bytes, status: int) -> bytes:
        got, body = self.conn.send(request)
        if got != status:
            raise RuntimeError(f"unexpected status {got}")
        return body

    def get(self, capsule_id: str) -> Any:
        return self.one.decode(self._call(self.get_req, 200))

    def create(self) -> Any:
        return self.one.decode(self._call(self.post_req, 201))

    def list(self) -> Any:
        return self.many.decode(self._call(self.list_req, 200))

    def close(self) -> None:
        self.conn.close()


class _FloorAsyncio:
    def __init__(self, base_url: str, api_key: str, pool: int) -> None:
        import floor
        from shapes import list_decoder, one_decoder

        host, port, self.get_req = floor.build(
            "GET", f"{base_url}/v1/capsules/{CAPSULE_ID}", api_key
        )
        self.list_req = floor.build("GET", f"{base_url}/v1/capsules", api_key)[2]
        self.post_req = floor.build("POST", f"{base_url}/v1/capsules", api_key, _CREATE_BODY)[2]
        self.pool = floor.AsyncFloorPool(host, port, pool)
        self.one, self.many = one_decoder, list_decoder

    async def _call(self, request: bytes, status: int) -> bytes:
        got, body = await self.pool.send(request)
        if got != status:
            raise RuntimeError(f"unexpected status {got}")
        return body

    async def get(self, capsule_id: str) -> Any:
        return self.one.decode(await self._call(self.get_req, 200))

    async def create(self) -> Any:
        return self.one.decode(await self._call(self.post_req, 201))

    async def list(self) -> Any:
        return self.many.decode(await self._call(self.list_req, 200))

    async def close(self) -> None:
        await self.pool.aclose()


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("ours-sync", "ours", "sync", _ours_sync),
        Variant("ours-asyncio", "ours", "asyncio", _ours_async),
        Variant("ours-trio", "ours", "trio", _ours_async),
        Variant("official-sync", "official", "sync", _official_sync),
        Variant("official-asyncio", "official", "asyncio", _official_async),
        Variant("official-trio", "official", "trio", _official_async),
        Variant("httpx-sync", "ours", "sync", _httpx_sync),
        Variant("httpx-asyncio", "ours", "asyncio", _httpx_async),
        Variant("httpx-trio", "ours", "trio", _httpx_async),
        Variant("floor-sync", "ours", "sync", _FloorSync),
        Variant("floor-asyncio", "ours", "asyncio", _FloorAsyncio),
    ]
}
