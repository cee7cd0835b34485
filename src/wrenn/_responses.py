"""Turning a received body into a model, with typed errors for every bad shape."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

import msgspec

from ._constants import ERROR_BODY_EXCERPT
from ._exceptions import WrennResponseValidationError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RawResponse:
    """A fully read response: status, headers and body bytes.

    ``headers`` is case-insensitive when it comes from a real response (httpx's own
    mapping, not copied); look keys up in lower case to work with a plain dict too.
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    retries_taken: int = 0


def decode(decoder: msgspec.json.Decoder[T], response: RawResponse) -> T:
    """Decode a JSON body, turning every failure into ``WrennResponseValidationError``.

    JSON served with a non-JSON content type is accepted (some proxies relabel it);
    anything else that does not decode names the content type and quotes a bounded
    excerpt of the body.
    """
    content = response.content
    try:
        return decoder.decode(content)
    except msgspec.ValidationError as exc:
        raise _invalid(response, f"the response does not match the expected shape: {exc}") from exc
    except msgspec.DecodeError as exc:
        # Classified only on failure: checking for an empty body up front would copy
        # every (possibly multi-megabyte) body on the hot path.
        if not content or content.isspace():
            raise _invalid(response, "the response body is empty where JSON was expected") from exc
        kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        raise _invalid(response, f"the response is not valid JSON ({kind}): {exc}") from exc


def _invalid(response: RawResponse, message: str) -> WrennResponseValidationError:
    excerpt = response.content[:ERROR_BODY_EXCERPT].decode("utf-8", "replace")
    error = WrennResponseValidationError(
        "invalid_response",
        message,
        response.status_code,
        request_id=response.headers.get("x-request-id"),
        body=excerpt,
    )
    error.retries_taken = response.retries_taken
    return error
