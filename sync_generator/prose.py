"""Prose for the sync reader: in docstrings and comments ``await x`` becomes ``x``,
``async with``/``async for``/``async def`` lose ``async``, ``aiter_*`` becomes ``iter_*``,
and every renamed name (``AsyncCapsule``, ``aclose``, ``__aenter__``...) becomes its twin
as a whole word; in other strings (messages) only names are renamed. Also finds the
async spelling that a generated file's prose still has (to be none)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Mapping

import unasync

_PROSE_RULES = [
    (re.compile(r"\basync +(with|for|def)\b"), r"\1"),
    (re.compile(r"\basync (generators?|iterators?|iterables?|context managers?)\b"), r"\1"),
    (re.compile(r"\basynchronous (generators?|iterators?|iterables?|context managers?)\b"), r"\1"),
    (re.compile(r"\bawait +(?=[\w(\[])"), ""),
    (re.compile(r"\baiter_(\w+)"), r"iter_\1"),
]
_ARTICLE = re.compile(r"\b([Aa])(n?)(\s+[`'\"(]*)$")
_VOWEL_SOUND = re.compile(r"[AEIOUaeiou]")
_ASYNC_WORDS = re.compile(
    r"(?<!\w)(?:await|async|awaitable|aiter_\w+"
    r"|asynchronous (?:generators?|iterators?|iterables?|context managers?))(?!\w)"
)

Span = tuple[tuple[int, int], tuple[int, int]]  # (line, column) of start and end


class SyncProse:
    """The prose rules for one renaming table (the generator's, plus unasync's own)."""

    def __init__(self, replacements: Mapping[str, str]) -> None:
        self._names = dict(unasync._ASYNC_TO_SYNC)
        self._names.update(replacements)
        longest_first = sorted(self._names, key=len, reverse=True)
        alternatives = "|".join(re.escape(n) for n in longest_first)
        self._pattern = re.compile(rf"(?<![\w]){'(?:' + alternatives + ')'}(?![\w])")

    def sync_names(self, text: str) -> str:
        """Rename every table name in ``text``, as whole words, and fix the article
        before a renamed name ("an ``AsyncLease``" -> "a ``Lease``")."""
        out: list[str] = []
        last = 0
        for match in self._pattern.finditer(text):
            new = self._names[match.group(0)]
            before = text[last : match.start()]
            article = _ARTICLE.search(before)
            if article is not None:
                wanted = "n" if _VOWEL_SOUND.match(new) else ""
                before = before[: article.start()] + article.group(1) + wanted + article.group(3)
            out.append(before + new)
            last = match.end()
        out.append(text[last:])
        return "".join(out)

    def sync_prose(self, text: str) -> str:
        """Docstring or comment text as a reader of the sync API should see it."""
        for pattern, replacement in _PROSE_RULES:
            text = pattern.sub(replacement, text)
        return self.sync_names(text)

    def async_spelling(self, text: str) -> list[str]:
        """The words of sync-side prose that still speak of the async API (to be empty)."""
        return [m.group(0) for m in (*_ASYNC_WORDS.finditer(text), *self._pattern.finditer(text))]

    def rewrite_strings_and_comments(self, source: str) -> str:
        """Apply ``sync_prose`` to docstrings and comments and ``sync_names`` to other strings."""
        docstrings = _docstrings(source)
        starts = [0]
        for line in source.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        edits: list[tuple[int, int, str]] = []
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                new = self.sync_prose(token.string)
            elif token.type == tokenize.STRING:
                is_doc = _inside(token, docstrings)
                new = self.sync_prose(token.string) if is_doc else self.sync_names(token.string)
            else:
                continue
            if new != token.string:
                begin = starts[token.start[0] - 1] + token.start[1]
                finish = starts[token.end[0] - 1] + token.end[1]
                edits.append((begin, finish, new))
        for begin, finish, new in reversed(edits):
            source = source[:begin] + new + source[finish:]
        return source

    def async_leftovers(self, generated: str) -> list[tuple[int, list[str]]]:
        """(line, words) for each docstring or comment of a generated file that still
        speaks of the async API; line 1 (the header naming the async source) is skipped."""
        docstrings = _docstrings(generated)
        found = []
        for token in tokenize.generate_tokens(io.StringIO(generated).readline):
            if token.start[0] == 1:
                continue
            if token.type == tokenize.COMMENT or (
                token.type == tokenize.STRING and _inside(token, docstrings)
            ):
                words = self.async_spelling(token.string)
                if words:
                    found.append((token.start[0], words))
        return found


def _docstrings(source: str) -> list[Span]:
    """Where each string statement is (a docstring, or prose standing as one)."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            end = (node.end_lineno or node.lineno, node.end_col_offset or 0)
            spans.append(((node.lineno, node.col_offset), end))
    return spans


def _inside(token: tokenize.TokenInfo, spans: list[Span]) -> bool:
    return any(start <= token.start and token.end <= end for start, end in spans)
