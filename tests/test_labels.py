"""The owner label: what it carries to the platform, and what it never does."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest

from wrenn import _labels


def test_the_owner_id_carries_a_hash_of_the_host_never_its_name() -> None:
    owner = _labels.owner_id()
    host = socket.gethostname()
    assert host not in owner
    assert re.fullmatch(r"h[0-9a-f]{8}-\d+-[0-9a-f]{8}", owner), owner
    assert owner.startswith("h" + hashlib.sha256(host.encode()).hexdigest()[:8] + "-")
    assert owner == _labels.owner_id()  # one per process


@pytest.mark.parametrize("hostname", ["", "a" * 255, "bad name\udcff", "ünï.example"])
def test_any_host_name_gives_a_tag_the_platform_accepts(hostname: str) -> None:
    tag = _labels.host_tag(hostname)
    assert re.fullmatch(r"h[0-9a-f]{8}", tag)
    stamped = _labels.stamp(None, token=_labels.new_token())
    assert len(stamped[_labels.OWNER]) <= _labels.MAX_VALUE
