"""One error tree, rooted at ``WrennError``.

The official SDK's class names are kept (``WrennNotFoundError`` and friends) and chosen
by the error ``code`` the server sends first, by the HTTP status second, so no real
server answer lands on the bare root (``_error_mapping.py`` makes that choice). Transport failures, bad responses and broken
streams have their own classes, and the library exception that caused one is kept in
``__cause__``: nothing from httpx, msgspec or json escapes the public API.

Every exception and warning class of the SDK is defined here (``wrenn.local``, the
embedded server, has its own), including the git errors, the SDK's warnings and the
internal ``DeadlineReached``; the modules that raise them import them from here, and
``wrenn.exceptions`` is the public path. Only a control-flow exception private to one
module, never seen outside it, may live with its module (the code runner's
``_NotReady``). ``tests/test_errors_home.py`` checks this.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = [
    "BlockingCallWarning",
    "GitAuthError",
    "GitCommandError",
    "GitError",
    "InsecureTransportWarning",
    "ModelValidationError",
    "WrennAPIStatusError",
    "WrennAgentError",
    "WrennAuthenticationError",
    "WrennCapsuleStateError",
    "WrennClientClosedError",
    "WrennCommandTimeoutError",
    "WrennConflictError",
    "WrennConnectionError",
    "WrennError",
    "WrennForbiddenError",
    "WrennGatewayTimeoutError",
    "WrennHostHasCapsulesError",
    "WrennHostUnavailableError",
    "WrennInternalError",
    "WrennNotFoundError",
    "WrennPayloadTooLargeError",
    "WrennRateLimitError",
    "WrennRedirectError",
    "WrennResponseTooLargeError",
    "WrennResponseValidationError",
    "WrennStreamError",
    "WrennStreamInterruptedError",
    "WrennStreamTimeoutError",
    "WrennTimeoutError",
    "WrennUsageError",
    "WrennValidationError",
]


class WrennError(Exception):
    """Root of every error the SDK raises.

    Attributes:
        code: the server's error code (``"not_found"``, ...) or a client-side code.
        message: a human-readable message, bounded in size and free of secrets.
        status_code: the HTTP status, when a response was received.
        request_id: the ``X-Request-Id`` of the response, when the server sent one.
        body: the decoded error body (or a bounded text excerpt), when there was one.
        retries_taken: how many retries were made before this error was raised.
    """

    def __init__(
        self,
        code: str | None = None,
        message: str = "",
        status_code: int | None = None,
        *,
        request_id: str | None = None,
        body: object = None,
    ) -> None:
        self.code = code
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.retries_taken = 0
        super().__init__(message)

    def __str__(self) -> str:
        # As in the official SDK, whose errors pass only the message to Exception:
        # str(error) is the message; the code, status and request id are attributes
        # (and in repr).
        return self.message

    def __repr__(self) -> str:
        details = f"code={self.code!r}, message={self.message!r}, status_code={self.status_code!r}"
        if self.request_id:
            details += f", request_id={self.request_id!r}"
        return f"{type(self).__name__}({details})"


class WrennUsageError(WrennError):
    """The SDK was used in a way it does not support (e.g. one async client on two event loops)."""


class WrennClientClosedError(WrennUsageError):
    """The client (or the stream's client) was closed before the call."""


class WrennConnectionError(WrennError):
    """The request could not be completed at the transport level.

    ``request_sent`` is False when the request provably never reached the server
    (connection refused, connect timeout, pool timeout); otherwise the server may have
    applied it, so a non-idempotent call (a POST) is not retried automatically.
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__("connection_error", message)
        self.request_sent = request_sent


class WrennTimeoutError(WrennConnectionError, TimeoutError):
    """A timeout or the call's overall deadline passed (also a builtin ``TimeoutError``).

    A transport-level timeout: connecting, waiting for the server, an attempt past its
    ``timeout``, the call past its ``total_timeout``. A command that outlives its own
    ``timeout`` raises ``WrennCommandTimeoutError`` instead, outside this branch.
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message, request_sent=request_sent)
        self.code = "timeout"


class WrennResponseValidationError(WrennError):
    """The server answered, but not with the shape the API promises (bad JSON, wrong type, empty body)."""


class WrennResponseTooLargeError(WrennResponseValidationError):
    """The response body exceeded ``max_response_bytes``."""


class WrennStreamError(WrennError):
    """A stream (server-sent events, exec output, terminal, download) failed."""


class WrennStreamInterruptedError(WrennStreamError):
    """A stream ended before its natural end (connection reset, close without an exit event).

    ``last_event_id`` is the id of the last server-sent event received, if any.
    """

    def __init__(
        self, message: str, *, close_code: int | None = None, last_event_id: str | None = None
    ) -> None:
        super().__init__("stream_interrupted", message)
        self.close_code = close_code
        self.last_event_id = last_event_id


class WrennStreamTimeoutError(WrennStreamError, WrennTimeoutError):
    """A stream stayed silent for longer than its idle timeout."""

    def __init__(self, message: str) -> None:
        WrennError.__init__(self, "stream_timeout", message)
        self.request_sent = True


class WrennAPIStatusError(WrennError):
    """The server answered with an error status (or a redirect the SDK will not follow)."""


class WrennRedirectError(WrennAPIStatusError):
    """A 3xx answer. Redirects are never followed, so the API key never leaves its origin."""


class WrennValidationError(WrennAPIStatusError):
    """400 (``invalid_request``): the server rejected the request as malformed."""


class WrennAuthenticationError(WrennAPIStatusError):
    """401 (``unauthorized``): the API key is missing, wrong or revoked."""


class WrennForbiddenError(WrennAPIStatusError):
    """403 (``forbidden``, ``no_team``, ``account_deactivated``)."""


class WrennNotFoundError(WrennAPIStatusError):
    """404 (``not_found``): no such capsule, template, process or route."""


class WrennConflictError(WrennAPIStatusError):
    """409 (``invalid_state``, ``conflict``, ``template_name_taken``, ``name_reserved``)."""


class WrennHostHasCapsulesError(WrennConflictError):
    """409: a host still has capsules. ``capsule_ids`` lists them.

    Constructed as in the official SDK, ``(code, message, status_code, capsule_ids)``,
    positionally or by keyword.
    """

    def __init__(
        self,
        code: str | None = None,
        message: str = "",
        status_code: int | None = None,
        capsule_ids: list[str] | None = None,
        *,
        request_id: str | None = None,
        body: object = None,
    ) -> None:
        super().__init__(code, message, status_code, request_id=request_id, body=body)
        self.capsule_ids = list(capsule_ids or [])

    @property
    def sandbox_ids(self) -> list[str]:
        """Deprecated spelling of ``capsule_ids`` (warns, as in the official SDK)."""
        warnings.warn(
            "'sandbox_ids' is deprecated, use 'capsule_ids' instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.capsule_ids


class WrennPayloadTooLargeError(WrennAPIStatusError):
    """413 (``too_large``): an upload exceeded the server's limit (100 MiB for ``files.write``)."""


class WrennRateLimitError(WrennAPIStatusError):
    """429: too many requests. ``retry_after`` is the server's requested wait in seconds, if given."""

    retry_after: float | None = None


class WrennInternalError(WrennAPIStatusError):
    """500 and other 5xx answers without a more specific class."""


class WrennAgentError(WrennAPIStatusError):
    """502 (``agent_error``): the capsule's host agent failed (missing file, exec timeout, ...)."""


class WrennHostUnavailableError(WrennAPIStatusError):
    """503 (``host_unavailable``, ``no_hosts_available``): no host can serve the request now."""


class WrennGatewayTimeoutError(WrennAPIStatusError):
    """504: a gateway in front of the API timed out."""


class WrennCapsuleStateError(WrennError, RuntimeError):
    """A capsule reached a state that makes the requested wait impossible (error, stopped, missing),
    or a transition did not take effect (a pause that left the capsule running).

    Also a ``RuntimeError``, as the official SDK's ``wait_ready`` raises. ``capsule_id``
    and ``status`` say which capsule and where it landed, when known.
    """

    def __init__(
        self,
        code: str | None = None,
        message: str = "",
        status_code: int | None = None,
        *,
        capsule_id: str | None = None,
        status: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(code, message, status_code, **kwargs)
        self.capsule_id = capsule_id
        self.status = status


class WrennCommandTimeoutError(WrennError, TimeoutError):
    """A command ran past its timeout and was stopped (SIGTERM, then SIGKILL).

    Also a builtin ``TimeoutError``, but not a ``WrennConnectionError`` (nor a
    ``WrennTimeoutError``): the connection was fine, the command simply ran long, so
    ``except WrennConnectionError`` around a call does not swallow it and no retry logic
    ever treats it as a transport failure.

    ``stdout`` and ``stderr`` hold the output produced until then; ``pid`` is the
    process id inside the capsule, when it was known.
    """

    def __init__(
        self, message: str, *, stdout: str = "", stderr: str = "", pid: int | None = None
    ) -> None:
        super().__init__("command_timeout", message)
        self.stdout = stdout
        self.stderr = stderr
        self.pid = pid


# --- Git ------------------------------------------------------------------------------


class GitError(WrennError):
    """A git command failed. ``stderr`` is its (credential-free) error output."""

    def __init__(self, message: str, *, stderr: str = "", exit_code: int = -1) -> None:
        super().__init__("git_error", message)
        self.stderr = stderr
        self.exit_code = exit_code


class GitCommandError(GitError):
    """git exited with a non-zero status for a reason other than authentication."""


class GitAuthError(GitError):
    """git could not authenticate to the remote."""


# --- Models ---------------------------------------------------------------------------


class ModelValidationError(ValueError):
    """Data given to ``Model.model_validate()`` or ``model_validate_json()`` does not fit the model.

    A ``ValueError``, as pydantic's ``ValidationError`` is; the message names the model
    and the offending field (``$.vcpus``), and the msgspec error is in ``__cause__``.
    """


# --- Warnings -------------------------------------------------------------------------


class InsecureTransportWarning(UserWarning):
    """The API key is about to travel in clear text to a host that is not this machine."""


class BlockingCallWarning(RuntimeWarning):
    """A blocking wrenn call was made from inside a running event loop, stalling it."""


# --- Internal (not exported) ----------------------------------------------------------


class DeadlineReached(Exception):
    """``receive(deadline)`` found no message before the deadline; the socket stays usable."""
