"""The labels this SDK puts on the capsules it creates, and the metadata rules of API 0.2.2.

Every create carries, in the capsule's metadata, the id of the process that made it
(``wrenn.owner``), a token unique to that one call (``wrenn.create``), and, when
given, a namespace and a name. They let a crashed program's capsules be found and
reaped, a create whose answer was lost be found and destroyed, and a named capsule
be found again. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from collections.abc import Mapping

OWNER = "wrenn.owner"
CREATE_TOKEN = "wrenn.create"
NAMESPACE = "wrenn.namespace"
NAME = "wrenn.name"
PREFIX = "wrenn."

# API 0.2.2's rules for create-time metadata.
MAX_KEYS = 20
MAX_VALUE = 64
KEY_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}")
RESERVED = frozenset({"kernel_version", "vmm_version", "agent_version", "envd_version"})

_owner: tuple[int, str] | None = None


def host_tag(hostname: str | None = None) -> str:
    """A short, stable tag of this machine: ``h`` + 8 hex of the host name's SHA-256.

    The host name itself is never sent: it can name internal machines, and it
    would sit in every capsule's metadata on the platform. The tag still tells
    capsules of one machine from another's.
    """
    name = socket.gethostname() if hostname is None else hostname
    return "h" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def owner_id() -> str:
    """This process's owner id: host tag, pid and a random part (new after ``fork``)."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:
        _owner = (pid, f"{host_tag()}-{pid}-{secrets.token_hex(4)}")
    return _owner[1]


def new_token() -> str:
    return secrets.token_hex(8)


def label_value(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_VALUE:
        raise ValueError(f"{what} must be a non-empty string of at most {MAX_VALUE} characters")
    return value


def stamp(
    user: Mapping[str, str] | None,
    *,
    token: str,
    namespace: str | None = None,
    name: str | None = None,
) -> dict[str, str]:
    """The metadata of one create: the user's, checked against the API's rules, plus ours."""
    metadata = dict(user or {})
    for key, value in metadata.items():
        if not KEY_PATTERN.fullmatch(key):
            raise ValueError(
                f"metadata key {key!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if key in RESERVED:
            raise ValueError(f"metadata key {key!r} is reserved by the platform")
        if key.startswith(PREFIX):
            raise ValueError(f"metadata keys starting with {PREFIX!r} are this SDK's own labels")
        if len(value) > MAX_VALUE:
            raise ValueError(f"metadata value of {key!r} exceeds {MAX_VALUE} characters")
    metadata[OWNER] = owner_id()
    metadata[CREATE_TOKEN] = token
    if namespace is not None:
        metadata[NAMESPACE] = label_value(namespace, "namespace")
    if name is not None:
        metadata[NAME] = label_value(name, "name")
    if len(metadata) > MAX_KEYS:
        ours = sum(1 for key in metadata if key.startswith(PREFIX))
        raise ValueError(
            f"metadata may have at most {MAX_KEYS} keys, {ours} of which this SDK uses: "
            f"give at most {MAX_KEYS - ours}"
        )
    return metadata


def in_namespace(metadata: Mapping[str, str] | None, namespace: str | None) -> bool:
    """Whether a capsule is one of ours, in ``namespace`` (None: carries no namespace)."""
    if not metadata or OWNER not in metadata:
        return False
    return metadata.get(NAMESPACE) == namespace
