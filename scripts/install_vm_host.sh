#!/usr/bin/env bash
# What wrenn.local's microVM backend (isolation="microvm") needs on a Debian host, idempotently:
#   - the host packages: QEMU (qemu-system-x86, qemu-utils), the guest kernel (linux-image-amd64),
#     busybox-static for the initramfs, mmdebstrap and e2fsprogs for the guest's root disk
#     (all GPL or similar: used from the host, never shipped in the wheel);
#   - the guest image, built once into ~/.cache/wrenn/vm (or $WRENN_VM_CACHE).
# Needs root and apt for the packages; elsewhere it says so and the microVM tests skip themselves.
# Run by scripts/test.sh after bootstrap.sh (it needs .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages="qemu-system-x86 qemu-utils linux-image-amd64 busybox-static mmdebstrap e2fsprogs"
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1 \
    || ! [ -x /bin/busybox ] || ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install_vm_host: installing $packages" >&2
        # shellcheck disable=SC2086
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null; }; then
            echo "install_vm_host: WARNING: the install failed: the microVM tests will be SKIPPED" >&2
            exit 0
        fi
    else
        echo "install_vm_host: not root with apt: the microVM backend and its tests are unavailable" >&2
        exit 0
    fi
fi
.venv/bin/python -m wrenn.local build-image
