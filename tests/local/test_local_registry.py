"""The registry of isolation backends: lookup, registration and the choice at start-up.

Backends registered here are fakes (plain subprocesses under another name) on a
registry of the test's own; the real bubblewrap probe is not run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from wrenn.local._runtime import Capabilities, Probe, Sandbox, Unsupported, _registry
from wrenn.local._runtime._bwrap import BwrapSandbox
from wrenn.local._runtime._microvm import VmSandbox
from wrenn.local._runtime._plain import PlainSandbox


class _Fake(PlainSandbox):
    """An isolated backend whose probe answers what the test sets."""

    kind = "fake-isolated"
    CAPABILITIES = Capabilities(
        isolated=True,
        host_filesystem=False,
        memory_snapshots=True,
        limits=False,
        precheck_exec=False,
    )
    problem: ClassVar[str | None] = None

    @classmethod
    def probe(cls) -> Probe:
        return Probe(cls.problem, "the fake works", {"flavour": "vanilla"}, maps_root=True)

    def __init__(self, *args: Any, flavour: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flavour = flavour


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, type[Sandbox]]]:
    registry: dict[str, type[Sandbox]] = {}
    monkeypatch.setattr(_registry, "BACKENDS", registry)
    _Fake.problem = None
    yield registry
    _Fake.problem = None


def _choose(isolation: str) -> _registry.Backend:
    backend = _registry.choose_backend(isolation, "registry-test", "sigstop")
    backend.cleanup()  # the test boots nothing: its cgroups go at once
    return backend


def test_the_real_registry_knows_every_backend_in_order() -> None:
    assert dict(_registry.BACKENDS) == {
        "microvm": VmSandbox,
        "bwrap": BwrapSandbox,
        "none": PlainSandbox,
    }
    assert _registry.isolation_choices() == ("auto", "microvm", "bwrap", "none")
    assert _registry.lookup("bwrap") is BwrapSandbox
    assert BwrapSandbox.CAPABILITIES.isolated and not PlainSandbox.CAPABILITIES.isolated
    # The VM's limits are its own, whatever the host's cgroups allow.
    assert VmSandbox.CAPABILITIES.limits and VmSandbox.CAPABILITIES.memory_snapshots
    assert not VmSandbox.CAPABILITIES.host_filesystem


def test_an_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown isolation backend 'vm'.*'auto', 'microvm', 'bwrap', 'none'"
    ):
        _registry.lookup("vm")
    with pytest.raises(ValueError, match="unknown isolation backend 'vm'"):
        _registry.choose_backend("vm", "registry-test")


def test_a_name_is_registered_once(backends: dict[str, type[Sandbox]]) -> None:
    _registry.register(_Fake)
    with pytest.raises(ValueError, match="already registered"):
        _registry.register(_Fake)

    class Auto(PlainSandbox):
        kind = "auto"

    with pytest.raises(ValueError, match="already registered"):
        _registry.register(Auto)
    assert list(backends) == ["fake-isolated"]


def test_auto_takes_the_first_isolated_backend_that_works(
    backends: dict[str, type[Sandbox]], tmp_path: Path
) -> None:
    _registry.register(PlainSandbox)
    _registry.register(_Fake)
    backend = _choose("auto")
    assert (backend.kind, backend.reason, backend.maps_root) == (
        "fake-isolated",
        "the fake works",
        True,
    )
    assert backend.capabilities.memory_snapshots and backend.capabilities.isolated
    sandbox = backend.sandbox("cl-x", tmp_path)
    # The probe's options reach every sandbox of the backend.
    assert isinstance(sandbox, _Fake) and sandbox.flavour == "vanilla"
    with pytest.raises(Unsupported, match="fake-isolated backend has no host filesystem"):
        sandbox.host_paths()


def test_auto_falls_back_without_isolation_and_says_why(
    backends: dict[str, type[Sandbox]],
) -> None:
    _registry.register(_Fake)
    _registry.register(PlainSandbox)
    _Fake.problem = "no hypervisor"
    backend = _choose("auto")
    assert backend.kind == "none" and not backend.capabilities.isolated
    assert backend.reason == "falling back to plain subprocesses WITHOUT isolation: no hypervisor"


def test_a_requested_backend_that_does_not_work_fails(
    backends: dict[str, type[Sandbox]],
) -> None:
    _registry.register(_Fake)
    _registry.register(PlainSandbox)
    _Fake.problem = "no hypervisor"
    with pytest.raises(RuntimeError, match=r"'fake-isolated' requested but .* unusable: no hyperv"):
        _choose("fake-isolated")
    # A backend without isolation is not probed: it is what was asked for.
    backend = _choose("none")
    assert (backend.kind, backend.reason) == ("none", "isolation='none' requested")


def test_the_fallback_names_every_backend_that_failed(
    backends: dict[str, type[Sandbox]],
) -> None:
    class Other(_Fake):
        kind = "fake-other"

    _registry.register(_Fake)
    _registry.register(Other)
    _registry.register(PlainSandbox)
    _Fake.problem = "no hypervisor"  # Other inherits it
    assert _choose("auto").reason.endswith(
        "WITHOUT isolation: fake-isolated: no hypervisor; fake-other: no hypervisor"
    )


class _OnRequest(_Fake):
    """Works here, but only when asked for by name (as a microVM on the software CPU)."""

    kind = "fake-slow"

    @classmethod
    def probe(cls) -> Probe:
        return Probe(None, "the slow fake works, slowly", automatic=False)


def test_auto_passes_over_a_backend_that_works_only_on_request(
    backends: dict[str, type[Sandbox]], caplog: pytest.LogCaptureFixture
) -> None:
    _registry.register(_OnRequest)
    _registry.register(_Fake)
    _registry.register(PlainSandbox)
    backend = _choose("auto")
    assert backend.kind == "fake-isolated"
    assert backend.reason == (
        "the fake works; not fake-slow: only on request (the slow fake works, slowly)"
    )
    _Fake.problem = "no hypervisor"
    assert _choose("auto").reason.endswith(
        "WITHOUT isolation: fake-slow: only on request (the slow fake works, slowly); "
        "fake-isolated: no hypervisor"
    )
    # Asked for by name it is used, with its caveat logged as a warning.
    with caplog.at_level("WARNING", logger="wrenn.local"):
        backend = _choose("fake-slow")
    assert (backend.kind, backend.reason) == ("fake-slow", "the slow fake works, slowly")
    assert "isolation='fake-slow': the slow fake works, slowly" in caplog.text


def test_declared_limits_hold_without_cgroups(
    backends: dict[str, type[Sandbox]], tmp_path: Path
) -> None:
    class OwnLimits(_Fake):
        kind = "fake-limits"
        CAPABILITIES = replace(_Fake.CAPABILITIES, limits=True)

    _registry.register(OwnLimits)
    backend = _choose("fake-limits")
    assert backend.capabilities.limits
    assert backend.sandbox("cl-y", tmp_path).capabilities.limits
    # An undeclared backend's limits are its cgroups' (none here).
    assert not _Fake("cl-z", tmp_path, None).capabilities.limits
