"""Flavour branches: ``if IS_ASYNC:`` keeps only its ``else:`` body in the sync twin, and
``if not IS_ASYNC:`` only its body. Any other use of the name fails the run, so no
async-only code ships in the sync tree."""

from __future__ import annotations

import ast
import re

from . import GenerationError

MARKER = "IS_ASYNC"
_ELSE_LINE = re.compile(r"^(?P<indent>[ \t]*)else[ \t]*:[ \t]*(#.*)?$")


def _is_marker(test: ast.expr) -> bool | None:
    """True for ``IS_ASYNC``, False for ``not IS_ASYNC``, None for anything else."""
    if isinstance(test, ast.Name) and test.id == MARKER:
        return True
    if (
        isinstance(test, ast.UnaryOp)
        and isinstance(test.op, ast.Not)
        and isinstance(test.operand, ast.Name)
        and test.operand.id == MARKER
    ):
        return False
    return None


def _dedent(lines: list[str], width: int, where: str) -> list[str]:
    out = []
    for line in lines:
        if not line.strip():
            out.append("\n")
        elif line[:width].strip():
            raise GenerationError(f"{where}: cannot dedent {line.rstrip()!r} out of its branch")
        else:
            out.append(line[width:])
    return out


def strip_flavour_branches(text: str, where: str) -> str:
    """Resolve every ``if IS_ASYNC:`` / ``if not IS_ASYNC:`` statement for the sync side."""
    for _ in range(10_000):
        tree = ast.parse(text)
        found = None
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.If)
                and _is_marker(node.test) is not None
                and (found is None or node.lineno < found.lineno)
            ):
                found = node
        if found is None:
            break
        text = _strip_one(text, found, f"{where}:{found.lineno}")
        try:
            ast.parse(text)
        except SyntaxError as exc:
            raise GenerationError(
                f"{where}:{found.lineno}: removing the {MARKER} branch leaves invalid code "
                f"({exc.msg}); give the branch an `else: pass` or restructure it"
            ) from None
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Name) and node.id == MARKER:
            raise GenerationError(
                f"{where}:{node.lineno}: {MARKER} is only understood as the whole condition "
                f"of `if {MARKER}:` or `if not {MARKER}:` (with an optional `else:`, no `elif`)"
            )
    return text


def _strip_one(text: str, node: ast.If, where: str) -> str:
    lines = text.splitlines(keepends=True)
    first = lines[node.lineno - 1]
    indent = node.col_offset
    if not first[indent:].startswith("if ") or first[:indent].strip():
        raise GenerationError(f"{where}: {MARKER} must start its own `if` statement (no `elif`)")
    if node.body[0].lineno == node.lineno:
        raise GenerationError(f"{where}: put the body of `if {MARKER}:` on its own lines")
    keep_body = not _is_marker(node.test)  # the sync side keeps what runs when IS_ASYNC is False
    kept: list[str] = []
    if node.orelse:
        else_index = None
        for index in range(node.body[-1].end_lineno or 0, node.orelse[0].lineno - 1):
            match = _ELSE_LINE.match(lines[index].rstrip("\n"))
            if match and len(match.group("indent")) == indent:
                else_index = index
                break
        if else_index is None:
            raise GenerationError(f"{where}: `elif` after an {MARKER} test is not supported")
        width = node.orelse[0].col_offset - indent
        if keep_body:
            kept = _dedent(lines[node.lineno : else_index], node.body[0].col_offset - indent, where)
        else:
            kept = _dedent(lines[else_index + 1 : node.end_lineno], width, where)
    elif keep_body:
        kept = _dedent(
            lines[node.lineno : node.end_lineno], node.body[0].col_offset - indent, where
        )
    return "".join(lines[: node.lineno - 1] + kept + lines[node.end_lineno :])
