"""Path escaping, proxy URLs, option resolution and the masked API key."""

from __future__ import annotations

import pickle
import warnings

import httpx
import pytest

from tests.helpers import API_KEY
from wrenn import AsyncWrennClient, WrennClient
from wrenn._config import InsecureTransportWarning, Secret
from wrenn._urls import build_path, proxy_url, resolve_proxy_domain


def test_build_path_encodes_one_segment() -> None:
    assert build_path("/v1/capsules/{id}", id="../api-keys") == "/v1/capsules/..%2Fapi-keys"
    assert build_path("/v1/capsules/{id}", id="%20") == "/v1/capsules/%2520"
    assert build_path("/v1/capsules/{id}", id=" x") == "/v1/capsules/%20x"


def test_proxy_urls() -> None:
    default = httpx.URL("https://app.wrenn.dev/api")
    assert resolve_proxy_domain(default, None) == "wrenn.dev"
    assert proxy_url(default, "wrenn.dev", "cl-abc", 8080) == "https://8080-cl-abc.wrenn.dev"
    local = httpx.URL("http://localhost:8000")
    assert (
        proxy_url(local, resolve_proxy_domain(local, None), "cl-abc", 8080)
        == "http://8080-cl-abc.localhost:8000"
    )


@pytest.mark.parametrize("bad", ["x.attacker.test#", "a/b", "x@y", "UPPER", "a" * 64, ""])
def test_proxy_url_refuses_ids_that_are_not_host_labels(bad: str) -> None:
    with pytest.raises(ValueError):
        proxy_url(httpx.URL("https://app.wrenn.dev/api"), "wrenn.dev", bad, 8080)


def test_missing_key_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WRENN_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"^No API key"):
        WrennClient()
    with pytest.raises(ValueError, match=r"^No API key"):
        AsyncWrennClient()


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRENN_API_KEY", API_KEY)
    monkeypatch.setenv("WRENN_BASE_URL", "")
    with WrennClient() as client:
        assert client.base_url == "https://app.wrenn.dev/api"
        assert client.proxy_domain == "wrenn.dev"
    monkeypatch.setenv("WRENN_BASE_URL", "http://127.0.0.1:9725/")
    monkeypatch.setenv("WRENN_PROXY_DOMAIN", "proxy.example")
    with WrennClient() as client:
        assert client.base_url == "http://127.0.0.1:9725"
        assert client.proxy_domain == "proxy.example"


@pytest.mark.parametrize("key", [API_KEY + "\n", " " + API_KEY, "wrn_é", "wrn\x00x"])
def test_malformed_key_is_refused_without_echo(key: str) -> None:
    with pytest.raises(ValueError) as info:
        WrennClient(api_key=key, base_url="http://127.0.0.1:1")
    assert API_KEY not in str(info.value)
    assert key.strip() not in str(info.value) or len(key.strip()) < 6


def test_key_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    with WrennClient(api_key=API_KEY, base_url="http://127.0.0.1:1") as client:
        for text in (
            repr(client),
            str(client),
            repr(vars(client)),
            repr(client.options),
            repr(client.capsules),
            repr(client.http.headers),
            repr(vars(client._requester)),
            repr(dir(client)),
        ):
            assert API_KEY not in text
        with pytest.raises(TypeError):
            pickle.dumps(client)
    secret = Secret(API_KEY)
    assert secret.masked == "wrn_…cdef"
    assert secret.scrub(f"echo {API_KEY}!") == "echo wrn_…cdef!"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_plain_http_to_another_host_warns() -> None:
    with pytest.warns(InsecureTransportWarning):
        WrennClient(api_key=API_KEY, base_url="http://api.example.com").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WrennClient(api_key=API_KEY, base_url="http://127.0.0.1:8000").close()
        WrennClient(api_key=API_KEY, base_url="http://localhost:8000").close()
        WrennClient(
            api_key=API_KEY, base_url="http://api.example.com", allow_insecure_http=True
        ).close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": float("inf")},
        {"timeout": httpx.Timeout(None)},
        {"max_retries": -1},
        {"max_retries": True},
        {"base_url": "ftp://x"},
        {"base_url": "http://127.0.0.1/?q=1"},
        {"default_headers": {"X-Bad": "a\r\nb"}},
        {"total_timeout": 0},
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object]) -> None:
    kwargs.setdefault("base_url", "http://127.0.0.1:1")
    with pytest.raises((ValueError, TypeError)):
        WrennClient(api_key=API_KEY, **kwargs)  # type: ignore[arg-type]


def test_with_options_validates_and_rejects_unknown_names() -> None:
    with WrennClient(api_key=API_KEY, base_url="http://127.0.0.1:1") as client:
        copy = client.with_options(timeout=3, max_retries=0, default_headers={"X-Team": "a"})
        assert copy.options.timeout.read == 3
        assert copy.options.max_retries == 0
        assert copy.options.default_headers == {"X-Team": "a"}
        assert client.options.max_retries == 2
        with pytest.raises(ValueError):
            client.with_options(timeout=-1)
        with pytest.raises(TypeError):
            client.with_options(bogus=1)  # type: ignore[call-arg]


def test_http_client_type_is_checked() -> None:
    wrong = httpx.AsyncClient()
    with pytest.raises(TypeError):
        WrennClient(api_key=API_KEY, base_url="http://127.0.0.1:1", http_client=wrong)  # type: ignore[arg-type]
