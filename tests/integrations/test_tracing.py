"""OpenTelemetry spans: one per API call with the route template, status, error class,
retries and capsule id, and no content at all, proven with a secret planted in every
input. Also: tracing costs nothing (and imports nothing) while it is off."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

import wrenn
from wrenn import (
    AsyncCapsule,
    AsyncWrennClient,
    WrennAuthenticationError,
    _tracing,
)
from wrenn.local import LocalServer
from wrenn.local._app import ROUTES

SECRET = "pl4nted-s3cret"  # a label-safe value, so it can go everywhere


@pytest.fixture(scope="module")
def secret_server() -> Iterator[LocalServer]:
    # The API key itself carries the secret.
    with LocalServer(api_key=f"wrn_{SECRET}_key") as server:
        yield server


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        _tracing.use_tracer_provider(None)
        provider.shutdown()


def _everything_recorded(span: ReadableSpan) -> str:
    """Every string a span carries that the SDK could have put there."""
    parts: list[str] = [span.name, str(span.status.description or "")]
    for key, value in (span.attributes or {}).items():
        parts += [key, repr(value)]
    for event in span.events:
        parts.append(event.name)
        for key, value in (event.attributes or {}).items():
            parts += [key, repr(value)]
    for link in span.links:
        for key, value in (link.attributes or {}).items():
            parts += [key, repr(value)]
    return "\n".join(parts)


async def _drain(stream: Any) -> None:
    async with stream:
        async for _ in stream:
            pass


async def _bytes(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield SECRET.encode() * 100


pytestmark = pytest.mark.anyio


async def test_no_span_carries_any_content(
    secret_server: LocalServer, spans: InMemorySpanExporter
) -> None:
    key, url = secret_server.api_key, secret_server.base_url
    folder = f"/tmp/{SECRET}"
    client = AsyncWrennClient(api_key=key, base_url=url, default_headers={"X-Note": SECRET})
    async with client:
        info = await client.capsules.create(
            metadata={"note": SECRET}, namespace=SECRET, name=SECRET
        )
        capsule = AsyncCapsule(_capsule_id=info.id, _client=client, _info=info)
        commands, files = capsule.commands, capsule.files
        await files.make_dir(folder)
        await files.write(f"{folder}/{SECRET}.txt", SECRET * 10)
        assert await files.read(f"{folder}/{SECRET}.txt") == SECRET * 10
        assert await files.read_bytes(f"{folder}/{SECRET}.txt")
        assert await files.exists(f"{folder}/{SECRET}.txt")
        await files.list(folder)
        await files.upload_stream(f"{folder}/up-{SECRET}", _bytes(3))
        await _drain(files.download_stream(f"{folder}/up-{SECRET}"))
        result = await commands.run(
            f"echo {SECRET} $TOKEN", envs={"TOKEN": SECRET}, cwd=folder, tag=f"fg-{SECRET}"
        )
        assert result.stdout.count(SECRET) == 2
        await commands.run(["/bin/echo", SECRET], envs={"TOKEN": SECRET})
        await _drain(commands.stream("/bin/echo", [SECRET], envs={"TOKEN": SECRET}))
        handle = await commands.run(
            f"sleep 30 # {SECRET}", background=True, tag=f"bg-{SECRET}", envs={"T": SECRET}
        )
        await commands.list()
        await commands.kill(f"bg-{SECRET}")
        del handle
        async with capsule.pty(cmd="/bin/sh", envs={"T": SECRET}, cwd=folder) as terminal:
            await terminal.write(f"echo {SECRET}; exit\n")
            with anyio.move_on_after(10):
                async for _ in terminal:
                    pass
        with pytest.raises(wrenn.WrennError):
            await files.read(f"{folder}/missing-{SECRET}")  # the error message names the path
        template = await capsule.create_snapshot(name=f"snap-{SECRET}")
        await client.snapshots.delete(template.name)
        # A retried call, counted.
        secret_server.faults.respond("GET /v1/capsules/{id}", 503, times=1)
        await capsule.get_info()
        await capsule.destroy()
    async with AsyncWrennClient(api_key=f"wrong-{SECRET}", base_url=url) as stranger:
        with pytest.raises(WrennAuthenticationError):
            await stranger.capsules.list()

    finished = spans.get_finished_spans()
    assert len(finished) > 20
    for span in finished:
        recorded = _everything_recorded(span)
        assert SECRET not in recorded, recorded
        assert key not in recorded
        # No exception event (its message can quote a path or output).
        assert not span.events

    by_template: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        attributes = span.attributes or {}
        template_value = attributes["url.template"]
        assert isinstance(template_value, str)
        assert template_value in ROUTES, template_value  # a real route template, not a path
        assert span.name == f"{attributes['http.request.method']} {template_value}"
        by_template.setdefault(template_value, []).append(span)
    for route in (
        "/v1/capsules",
        "/v1/capsules/{id}",
        "/v1/capsules/{id}/exec",
        "/v1/capsules/{id}/exec/stream",
        "/v1/capsules/{id}/files/write",
        "/v1/capsules/{id}/files/read",
        "/v1/capsules/{id}/files/stream/read",
        "/v1/capsules/{id}/files/stream/write",
        "/v1/capsules/{id}/processes/{selector}",
        "/v1/capsules/{id}/pty",
        "/v1/snapshots",
        "/v1/snapshots/{name}",
    ):
        assert route in by_template, (route, sorted(by_template))

    [create] = [s for s in by_template["/v1/capsules"] if s.name.startswith("POST")]
    assert create.attributes is not None and create.attributes["wrenn.capsule.id"] == info.id
    for span in by_template["/v1/capsules/{id}/files/write"]:
        assert span.attributes is not None and span.attributes["wrenn.capsule.id"] == info.id
        assert span.attributes["http.response.status_code"] in (200, 204)
    # A command's span is its exec stream, open for the whole command.
    exec_spans = by_template["/v1/capsules/{id}/exec/stream"]
    assert all(s.attributes and s.attributes["wrenn.stream"] is True for s in exec_spans)
    assert all(
        s.attributes and s.attributes["http.response.status_code"] == 101 for s in exec_spans
    )
    # An error: class and status, status ERROR, no description.
    failed = [s for s in finished if s.status.status_code is StatusCode.ERROR]
    classes = {(s.attributes or {}).get("error.type") for s in failed}
    assert {"WrennAgentError", "WrennAuthenticationError"} <= classes, classes
    assert all(s.status.description is None for s in failed)
    retried = [
        s
        for s in by_template["/v1/capsules/{id}"]
        if (s.attributes or {}).get("http.request.resend_count") == 1
    ]
    assert retried and (retried[0].attributes or {})["http.response.status_code"] == 200


async def test_a_stream_span_lasts_until_the_stream_closes(
    local_server: LocalServer, spans: InMemorySpanExporter
) -> None:
    async with await AsyncCapsule.create(
        api_key=local_server.api_key, base_url=local_server.base_url
    ) as capsule:
        stream = capsule.commands.stream("echo one; sleep 0.3; echo two")
        async with stream:
            async for _event in stream:
                open_spans = [
                    s for s in spans.get_finished_spans() if s.name.endswith("/exec/stream")
                ]
                assert open_spans == []  # still streaming: not ended yet
                break
        ended = [s for s in spans.get_finished_spans() if s.name.endswith("/exec/stream")]
        assert len(ended) == 1
        assert ended[0].end_time is not None and ended[0].start_time is not None


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/capsules", "/v1/capsules"),
        ("/v1/capsules/stats", "/v1/capsules/stats"),
        ("/v1/capsules/cl-abc123", "/v1/capsules/{id}"),
        ("/v1/capsules/cl-1/processes/42/stream", "/v1/capsules/{id}/processes/{selector}/stream"),
        ("/v1/capsules/cl-1/processes/my%2Ftag", "/v1/capsules/{id}/processes/{selector}"),
        ("/v1/snapshots/snap%20x", "/v1/snapshots/{name}"),
        ("/v1/capsules/cl-1/files/read?path=/etc/secret", "/v1/capsules/{id}/files/read"),
        ("/v1/unknown/thing-1/x", "/v1/{param}/{param}/{param}"),
    ],
)
def test_route_templates_keep_only_route_words(path: str, template: str) -> None:
    assert _tracing.route_template(path) == template


def test_every_server_route_maps_back_to_its_template() -> None:
    values = {"{id}": "cl-9xyz", "{selector}": "tag-1", "{name}": "my-snapshot"}
    for route in ROUTES:
        path = route
        for placeholder, value in values.items():
            path = path.replace(placeholder, value)
        assert _tracing.route_template(path) == route


def test_off_when_no_provider_is_set() -> None:
    # This process may have a global provider or not; the check runs in a fresh one.
    script = (
        "import sys, wrenn\n"
        "from wrenn import _tracing\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported early'\n"
        "assert _tracing.call_span('GET', '/v1/capsules') is _tracing._NO_SPAN\n"
        "assert 'opentelemetry.sdk' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_off_and_import_free_without_opentelemetry() -> None:
    # opentelemetry made unimportable: the SDK works and never tries again per call.
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "from wrenn import _tracing\n"
        "assert _tracing.call_span('GET', '/v1/capsules') is _tracing._NO_SPAN\n"
        "assert _tracing._trace is None\n"
        "with _tracing.call_span('POST', '/v1/capsules') as span:\n"
        "    span.done(None)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_global_provider_is_used_once_set() -> None:
    script = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "from wrenn import _tracing\n"
        "assert _tracing.call_span('GET', '/v1/capsules') is _tracing._NO_SPAN\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "with _tracing.call_span('GET', '/v1/capsules/cl-1') as span:\n"
        "    pass\n"
        "[s] = exporter.get_finished_spans()\n"
        "assert s.name == 'GET /v1/capsules/{id}', s.name\n"
        "assert s.attributes['wrenn.capsule.id'] == 'cl-1'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
