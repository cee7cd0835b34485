"""The KVM probe: a guest must really boot under KVM, and the answer is kept per host.

Most tests here replace the boot (no QEMU); the last one runs the real probe where
QEMU and the image exist (on this project's machines it fails fast: QEMU aborts on
an MSR under their software-nested KVM).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from wrenn.local._runtime import _microvm
from wrenn.local._runtime._microvm import VmSandbox
from wrenn.local._vm import _kvm
from wrenn.local._vm._image import Image


def _image(tmp_path: Path) -> Image:
    return Image(tmp_path, tmp_path / "vmlinux", tmp_path / "initramfs", tmp_path / "rootfs", "r")


@pytest.fixture
def boots(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the probe's boots; each answers what the test puts in ``answers``."""
    calls: list[str] = []
    monkeypatch.setattr(_kvm.os, "access", lambda path, mode: True)
    monkeypatch.setattr(_kvm, "_host_key", lambda: "qemu 1 2 kernel k")

    def boot(image: Image) -> str | None:
        calls.append("boot")
        return ANSWER.get("problem")

    monkeypatch.setattr(_kvm, "_boot_once", boot)
    return calls


ANSWER: dict[str, Any] = {}


def test_no_usable_dev_kvm_is_a_problem_without_a_boot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_kvm.os, "access", lambda path, mode: False)
    monkeypatch.setattr(_kvm, "_boot_once", lambda image: pytest.fail("booted"))
    assert _kvm.kvm_problem(_image(tmp_path)) == "no usable /dev/kvm"


def test_the_answer_is_kept_per_host_and_asked_again_when_the_host_changes(
    boots: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    image = _image(tmp_path)
    ANSWER["problem"] = "a guest does not run under KVM here (MSR)"
    assert _kvm.kvm_problem(image) == ANSWER["problem"]
    assert _kvm.kvm_problem(image) == ANSWER["problem"]
    assert boots == ["boot"]  # the second answer came from the record
    record = json.loads((tmp_path / _kvm.RECORD).read_text())
    assert record == {"key": "qemu 1 2 kernel k", "problem": ANSWER["problem"]}
    # Another QEMU or host kernel: probed again, and a success is kept too.
    monkeypatch.setattr(_kvm, "_host_key", lambda: "qemu 1 3 kernel k")
    ANSWER["problem"] = None
    assert _kvm.kvm_problem(image) is None
    assert _kvm.kvm_problem(image) is None
    assert boots == ["boot", "boot"]


def test_a_broken_record_is_probed_again(boots: list[str], tmp_path: Path) -> None:
    (tmp_path / _kvm.RECORD).write_text("[not an object")
    ANSWER["problem"] = None
    assert _kvm.kvm_problem(_image(tmp_path)) is None
    assert boots == ["boot"]


def _probe_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kvm: str | None) -> Any:
    monkeypatch.setattr(_microvm.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(_microvm, "cached_image", lambda: _image(tmp_path))
    monkeypatch.setattr(_microvm, "kvm_problem", lambda image: kvm)
    return VmSandbox.probe()


def test_auto_may_pick_the_vm_backend_only_where_kvm_works(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fast = _probe_with(monkeypatch, tmp_path, None)
    assert (fast.problem, fast.automatic, fast.options["accel"]) == (None, True, "kvm")
    slow = _probe_with(monkeypatch, tmp_path, "no usable /dev/kvm")
    assert (slow.problem, slow.automatic, slow.options["accel"]) == (None, False, "tcg")
    assert slow.reason.endswith("KVM is not used: no usable /dev/kvm")


@pytest.mark.vm
@pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or os.environ.get("WRENN_VM_TESTS") == "0",
    reason="needs QEMU",
)
def test_the_real_probe_answers_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from wrenn.local._vm._image import cached_image

    image = cached_image()
    if image is None:
        pytest.skip("the microVM image is not built")
    (image.directory / _kvm.RECORD).unlink(missing_ok=True)
    first = _kvm.kvm_problem(image)  # a real boot under KVM (bounded by PROBE_TIMEOUT)
    assert first is None or first == "no usable /dev/kvm" or "under KVM" in first
    monkeypatch.setattr(_kvm, "_boot_once", lambda image: pytest.fail("probed twice"))
    assert _kvm.kvm_problem(image) == first
