"""Every numeric tunable of the SDK lives in ``wrenn._constants``.

Module-level ``NAME = <number>`` assignments elsewhere in ``src/wrenn`` fail this test,
unless listed below with the reason they stay. The scan reads tokens, not an ``ast``
(see tests/test_netbackend_internals.py for why). The generated ``_sync`` tree mirrors
``_async`` and the embedded server (``wrenn.local``) keeps its own settings, so neither
is scanned.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "wrenn"
NOT_SCANNED = {"local", "_sync"}
HOME = "_constants.py"

# Numbers that are not tunables: the API's or a protocol's own values.
ALLOWED = {
    ("_code_runner.py", "JUPYTER_PORT"): "the port the capsule's Jupyter server listens on",
    ("_labels.py", "MAX_KEYS"): "API 0.2.2's limit on create-time labels, checked before sending",
    ("_labels.py", "MAX_VALUE"): "API 0.2.2's limit on a label value's length",
    **{
        ("cli/_app.py", name): "the CLI's documented exit codes are its interface, not a knob"
        for name in (
            "EXIT_OK",
            "EXIT_ERROR",
            "EXIT_USAGE",
            "EXIT_NOT_FOUND",
            "EXIT_CONFLICT",
            "EXIT_AUTH",
            "EXIT_TIMEOUT",
            "EXIT_CONNECTION",
            "EXIT_INTERRUPTED",
        )
    },
}

CONSTANT_NAME = re.compile(r"_?[A-Z][A-Z0-9_]*")
ARITHMETIC = {"+", "-", "*", "/", "//", "**", "(", ")"}


def numeric_constants(text: str) -> list[str]:
    """Names assigned a number (or arithmetic on numbers) at module level."""
    found: list[str] = []
    depth = 0
    line: list[tokenize.TokenInfo] = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.INDENT:
            depth += 1
        elif token.type == tokenize.DEDENT:
            depth -= 1
        elif token.type == tokenize.NEWLINE:
            if depth == 0 and (name := _assigned_number(line)):
                found.append(name)
            line = []
        elif token.type not in (tokenize.COMMENT, tokenize.NL):
            line.append(token)
    return found


def _assigned_number(line: list[tokenize.TokenInfo]) -> str | None:
    if (
        len(line) < 3
        or line[0].type != tokenize.NAME
        or not CONSTANT_NAME.fullmatch(line[0].string)
    ):
        return None
    if line[1].string == "=":
        value = line[2:]
    elif line[1].string == ":":
        equals = [i for i, t in enumerate(line) if t.string == "="]
        if not equals:
            return None
        value = line[equals[0] + 1 :]
    else:
        return None
    if not any(t.type == tokenize.NUMBER for t in value):
        return None
    if all(t.type == tokenize.NUMBER or t.string in ARITHMETIC for t in value):
        return line[0].string
    return None


def _scanned() -> list[Path]:
    paths = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] in NOT_SCANNED or relative.as_posix() == HOME:
            continue
        paths.append(path)
    return paths


def test_the_scan_sees_module_level_numbers_only() -> None:
    source = (
        "import x\n"
        "PLAIN = 1.5\n"
        "_PRIVATE = 65_536  # a comment\n"
        "ANNOTATED: float = -2.0\n"
        "PRODUCT = 16 * 1024 * 1024\n"
        "WRAPPED = (\n    24 * 3600.0\n)\n"
        "NAME = 'text'\n"
        "STATUSES = (502, 503)\n"
        "CALL = make(3)\n"
        "lower = 4\n"
        "if x:\n    INDENTED = 5\n"
        "class C:\n    IN_CLASS = 6\n"
        "def f():\n    IN_FUNCTION = 7\n"
        "AFTER = 8\n"
    )
    assert numeric_constants(source) == [
        "PLAIN",
        "_PRIVATE",
        "ANNOTATED",
        "PRODUCT",
        "WRAPPED",
        "AFTER",
    ]


def test_the_scan_covers_the_modules_that_had_tunables() -> None:
    scanned = {p.relative_to(SRC).as_posix() for p in _scanned()}
    assert {"_async/durable.py", "_async/_websocket.py", "_reconnect.py", "cli/_exec.py"} <= scanned
    assert not any(name.startswith(("local/", "_sync/")) for name in scanned)


def test_numeric_tunables_live_in_constants() -> None:
    strays = []
    for path in _scanned():
        relative = path.relative_to(SRC).as_posix()
        for name in numeric_constants(path.read_text(encoding="utf-8")):
            if (relative, name) not in ALLOWED:
                strays.append(f"{relative}: {name}")
    assert strays == [], (
        "define these in src/wrenn/_constants.py (or allow them here, with a reason)"
    )


def test_the_allowlist_has_no_stale_entries() -> None:
    for (relative, name), reason in ALLOWED.items():
        assert reason
        assert name in numeric_constants((SRC / relative).read_text(encoding="utf-8")), (
            relative,
            name,
        )


def test_constants_holds_numbers() -> None:
    # The scan of the home itself finds what moved there: a rename cannot hide it.
    names = set(numeric_constants((SRC / HOME).read_text(encoding="utf-8")))
    assert {
        "WS_PING_INTERVAL",
        "LIVENESS_EVERY",
        "SEEN_IDS",
        "MAX_POOL_WAITS",
        "CLI_STOP_GRACE",
        "KERNEL_POLL_INTERVAL",
    } <= names


def test_the_pure_modules_that_read_constants_stay_free_of_httpx() -> None:
    # _constants holds plain numbers, so the output and reconnect policies import light.
    code = (
        "import sys, wrenn._constants, wrenn._process, wrenn._reconnect, wrenn._durable; "
        "print('httpx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
