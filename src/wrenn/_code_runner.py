"""The code runner's models and its Jupyter messaging, shared by both flavours.

``run_code`` speaks Jupyter's kernel protocol (v5.3) over the kernel WebSocket of
the Jupyter server inside a ``code-runner-beta`` capsule, reached through the
capsule port proxy ``{port}-{capsule_id}.{domain}``.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._urls import proxy_url

DEFAULT_TEMPLATE = "code-runner-beta"
DEFAULT_KERNEL = "wrenn"
JUPYTER_PORT = 8888

_MIME_FIELDS: dict[str, str] = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    "application/vnd.plotly.v1+json": "plotly",
}


@dataclass
class ExecutionError:
    """An error from a cell: the exception's class name, its message and the traceback.

    ``name`` is ``"Timeout"`` when ``run_code``'s timeout passed (the kernel was
    interrupted), ``"Disconnected"`` when the kernel connection dropped mid-cell, and
    ``"Aborted"`` when the kernel skipped the cell because one before it failed.
    """

    name: str = ""
    value: str = ""
    traceback: str = ""


@dataclass
class Logs:
    """stdout and stderr of a cell, one list element per chunk as the kernel sent it."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


@dataclass
class Result:
    """One rich output of a cell: the value of its last expression (``is_main_result``)
    or a ``display_data`` output. Known MIME types fill the named fields (images are
    base64 strings); any other type goes to ``extra``."""

    text: str | None = None
    html: str | None = None
    markdown: str | None = None
    svg: str | None = None
    png: str | None = None
    jpeg: str | None = None
    gif: str | None = None
    pdf: str | None = None
    latex: str | None = None
    json: dict[str, Any] | None = None
    javascript: str | None = None
    plotly: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    is_main_result: bool = False

    @classmethod
    def from_bundle(cls, bundle: dict[str, Any], *, is_main_result: bool = False) -> Result:
        """Build a result from a Jupyter MIME bundle (``{"text/plain": ..., ...}``)."""
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for mime, value in bundle.items():
            name = _MIME_FIELDS.get(mime)
            if name is None:
                extra[mime] = value
            else:
                known[name] = value
        return cls(**known, extra=extra or None, is_main_result=is_main_result)

    def formats(self) -> list[str]:
        """The names of the fields that are set, then the MIME types in ``extra``."""
        names = [name for name in _MIME_FIELDS.values() if getattr(self, name) is not None]
        return names + list(self.extra or ())


@dataclass
class Execution:
    """Everything a ``run_code`` call produced.

    ``timed_out`` is True when the call ended before the cell finished: its timeout
    passed (``error.name == "Timeout"``; the kernel was interrupted) or the kernel
    connection dropped (``error.name == "Disconnected"``).
    """

    results: list[Result] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: ExecutionError | None = None
    execution_count: int | None = None
    timed_out: bool = False

    @property
    def text(self) -> str | None:
        """The ``text/plain`` form of the cell's value, or None when it had none."""
        for result in self.results:
            if result.is_main_result:
                return result.text
        return None


def check_language(language: str) -> None:
    if language != "python":
        raise ValueError(
            f"language {language!r} is not supported: run_code runs Python "
            "(choose another kernel with the capsule's `kernel=` argument)"
        )


def execute_request(code: str) -> dict[str, Any]:
    """A Jupyter ``execute_request`` for the shell channel, with fresh ids."""
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, not {type(code).__name__}")
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "session": uuid.uuid4().hex,
            "username": "wrenn-sdk",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def pick_kernel(kernels: object, name: str) -> str | None:
    """The id of the first running kernel with this kernelspec name."""
    if not isinstance(kernels, list):
        return None
    for kernel in kernels:
        if isinstance(kernel, dict) and kernel.get("name") == name:
            kernel_id = kernel.get("id")
            if isinstance(kernel_id, str) and kernel_id:
                return kernel_id
    return None


class CellCollector:
    """Folds the kernel messages of one cell into an ``Execution``, calling callbacks."""

    def __init__(
        self,
        msg_id: str,
        on_result: Callable[[Result], Any] | None,
        on_stdout: Callable[[str], Any] | None,
        on_stderr: Callable[[str], Any] | None,
        on_error: Callable[[ExecutionError], Any] | None,
    ) -> None:
        self.msg_id = msg_id
        self.execution = Execution()
        # A cell is over when the kernel is idle again (iopub) AND it has answered the
        # request (shell): the two channels interleave freely, so either may come last.
        self.started = False
        # Any message of this cell at all: a connection that dies before one arrives
        # may have taken the cell nowhere.
        self.heard = False
        self.idle = False
        self.replied = False
        self._on_result = on_result
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._on_error = on_error

    def set_error(self, error: ExecutionError) -> None:
        self.execution.error = error
        if self._on_error is not None:
            self._on_error(error)

    def apply(self, message: object) -> bool:
        """Take one kernel message; True once the cell is finished (idle and answered)."""
        if not isinstance(message, dict):
            return False
        parent = message.get("parent_header")
        if not isinstance(parent, dict) or parent.get("msg_id") != self.msg_id:
            return False  # another cell's, or the kernel's own
        self.heard = True
        kind = message.get("msg_type") or (message.get("header") or {}).get("msg_type")
        content = message.get("content")
        if not isinstance(content, dict):
            return False
        execution = self.execution
        if kind == "stream":
            text = content.get("text")
            if isinstance(text, str):
                if content.get("name") == "stderr":
                    execution.logs.stderr.append(text)
                    if self._on_stderr is not None:
                        self._on_stderr(text)
                else:
                    execution.logs.stdout.append(text)
                    if self._on_stdout is not None:
                        self._on_stdout(text)
        elif kind in ("execute_result", "display_data"):
            data = content.get("data")
            if isinstance(data, dict):
                result = Result.from_bundle(data, is_main_result=kind == "execute_result")
                execution.results.append(result)
                if self._on_result is not None:
                    self._on_result(result)
            count = content.get("execution_count")
            if kind == "execute_result" and isinstance(count, int):
                execution.execution_count = count
        elif kind == "error":
            lines = content.get("traceback")
            self.set_error(
                ExecutionError(
                    name=str(content.get("ename", "")),
                    value=str(content.get("evalue", "")),
                    traceback="\n".join(str(line) for line in lines)
                    if isinstance(lines, list)
                    else "",
                )
            )
        elif kind == "execute_input":
            self.started = True
        elif kind == "execute_reply":
            self.replied = True
            count = content.get("execution_count")
            if isinstance(count, int) and execution.execution_count is None:
                execution.execution_count = count
            if content.get("status") == "aborted" and execution.error is None:
                # Jupyter skips cells queued behind one that failed (stop_on_error).
                self.set_error(
                    ExecutionError(
                        "Aborted", "the kernel skipped this cell: an earlier cell failed"
                    )
                )
        elif kind == "status":
            state = content.get("execution_state")
            if state == "busy":
                self.started = True
            elif state == "idle":
                self.idle = True
        return self.idle and self.replied

    def check_complete(self) -> None:
        """After the cell ended: if its start was never seen, its output may be missing.

        The kernel publishes ``busy`` and the input before anything else of a cell; a
        cell that ends without them lost messages on the way (a subscription that was
        not live yet). Returning what arrived as a plain success would hide that.
        """
        if not self.started and self.execution.error is None:
            self.set_error(
                ExecutionError(
                    "Incomplete",
                    "the kernel's first messages for this cell were not received; "
                    "its output may be incomplete",
                )
            )


PROXY_TOKEN_HEADER = "X-Wrenn-Proxy-Token"
_PROXY_TOKEN_CONTEXT = b"wrenn-capsule-proxy:"


def proxy_token(api_key: str, capsule_id: str) -> str:
    """The capsule's port-proxy credential: HMAC-SHA256 of its id under the team key.

    ``wrenn.local`` requires it on every proxied request (its proxy is the
    server itself, reachable by any local user); the platform's proxy ignores
    it. Unlike the key it is safe to send towards a capsule: it opens only that
    capsule's ports, and the key cannot be recovered from it. It must match
    ``wrenn.local._auth.proxy_token``.
    """
    digest = hmac.new(api_key.encode(), _PROXY_TOKEN_CONTEXT + capsule_id.encode(), "sha256")
    return digest.hexdigest()


def proxy_endpoint(
    base_url: httpx.URL,
    proxy_domain: str,
    capsule_id: str,
    port: int,
    *,
    token: str | None = None,
) -> tuple[str, dict[str, str]]:
    """Where to send requests for a capsule port, and the headers they need.

    The proxy URL is ``{scheme}://{port}-{capsule_id}.{domain}``. When the domain is
    an IP address or ``localhost`` (a local or self-hosted server), that name does
    not resolve, so requests go to the domain itself with the proxy name in the
    ``Host`` header, which is all the proxy routes on.
    """
    url = proxy_url(base_url, proxy_domain, capsule_id, port)
    auth = {PROXY_TOKEN_HEADER: token} if token is not None else {}
    scheme, _, proxy_host = url.partition("://")
    target = httpx.URL(f"{scheme}://{proxy_domain}")
    try:
        ipaddress.ip_address(target.host)
    except ValueError:
        if target.host.endswith(".localhost"):
            target = target.copy_with(host="127.0.0.1")  # loopback by definition (RFC 6761)
        elif target.host != "localhost":
            return url, auth
    return str(target).rstrip("/"), {"Host": proxy_host, **auth}
