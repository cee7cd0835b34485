"""Renames that make two names one: ``aclose`` -> ``close`` in a class whose tree already
defines ``close`` would leave the sync twin with one name for two things.

The scope checked is every module (its top-level names) and every class together with
all of its bases defined in the same tree, across modules; bases from outside the tree
(httpx, the standard library) and function-local names are not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

SyncName = Callable[[str], str]
Class = tuple[str, str]  # (dotted module, class name)


def _bound_names(body: list[ast.stmt], sync_name: SyncName) -> dict[str, object]:
    """The names a module or class body binds (descending into if/try/with, not into
    defs), each with what it stands for: two imports of one object are one meaning."""
    names: dict[str, object] = {}
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[stmt.name] = ("defined", stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names[sub.id] = ("defined", sub.id)
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if alias.name != "*":
                    origin = ("import", stmt.level, stmt.module, sync_name(alias.name))
                    names[alias.asname or alias.name] = origin
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                names[alias.asname or alias.name.split(".")[0]] = ("import", alias.name)
        elif isinstance(stmt, (ast.If, ast.Try, ast.With, ast.AsyncWith)):
            for field in ("body", "orelse", "finalbody"):
                names.update(_bound_names(getattr(stmt, field, []), sync_name))
            for handler in getattr(stmt, "handlers", []):
                names.update(_bound_names(handler.body, sync_name))
    return names


def check_collisions(modules: dict[str, str], label: str, sync_name: SyncName) -> list[str]:
    """Every rename that maps two names of one scope to the same sync name.

    ``modules`` maps a dotted module name (relative to the tree) to its stripped async
    source; ``sync_name`` is unasync's renaming of one name. A scope is a module's top
    level, or a class with all its in-tree bases.
    """
    trees = {name: ast.parse(text) for name, text in modules.items()}
    problems: list[str] = []

    def clashes(names: dict[str, object], where: str) -> None:
        by_sync: dict[str, set[str]] = {}
        meanings: dict[str, set[object]] = {}
        for name, meaning in names.items():
            by_sync.setdefault(sync_name(name), set()).add(name)
            meanings.setdefault(sync_name(name), set()).add(meaning)
        for target, sources in sorted(by_sync.items()):
            if len(sources) > 1 and len(meanings[target]) > 1:
                problems.append(
                    f"{where}: {' and '.join(sorted(sources))} would all become {target!r}"
                )

    classes: dict[Class, ast.ClassDef] = {}
    for module, tree in trees.items():
        clashes(_bound_names(tree.body, sync_name), f"{label}/{module.replace('.', '/')}.py")
        for stmt in tree.body:
            if isinstance(stmt, ast.ClassDef):
                classes[(module, stmt.name)] = stmt

    def resolve_module(module: str, level: int, target: str | None) -> str | None:
        package = module.split(".")[:-1]
        if level > 1:
            package = package[: len(package) - (level - 1)]
        full = ".".join([*package, *([target] if target else [])])
        return full if full in trees else None

    def imports(module: str) -> tuple[dict[str, Class], dict[str, str]]:
        """(name -> (module, class) imported from the tree, alias -> tree module)."""
        names: dict[str, Class] = {}
        aliases: dict[str, str] = {}
        for stmt in ast.walk(trees[module]):
            if isinstance(stmt, ast.ImportFrom) and stmt.level:
                source = resolve_module(module, stmt.level, stmt.module)
                for alias in stmt.names:
                    local = alias.asname or alias.name
                    if source is not None:
                        names[local] = (source, alias.name)
                    sub = resolve_module(
                        module,
                        stmt.level,
                        f"{stmt.module}.{alias.name}" if stmt.module else alias.name,
                    )
                    if sub is not None:
                        aliases[local] = sub
        return names, aliases

    def bases(key: Class) -> list[Class]:
        module, _ = key
        names, aliases = imports(module)
        found = []
        for base in classes[key].bases:
            candidate: Class | None
            if isinstance(base, ast.Name):
                candidate = (
                    (module, base.id) if (module, base.id) in classes else names.get(base.id)
                )
            elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
                target = aliases.get(base.value.id)
                candidate = (target, base.attr) if target else None
            else:
                candidate = None
            if candidate is not None and candidate in classes:
                found.append(candidate)
        return found

    for key, cls in sorted(classes.items()):
        members: dict[str, object] = {}
        seen: set[Class] = set()
        todo = [key]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for name, meaning in _bound_names(classes[current].body, sync_name).items():
                members.setdefault(name, meaning)
            todo.extend(bases(current))
        inherited = "" if len(seen) == 1 else " (with its bases in the tree)"
        clashes(members, f"{label}/{key[0].replace('.', '/')}.py: class {cls.name}{inherited}")
    return problems
