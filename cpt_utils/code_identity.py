"""The identity of the code that computes a stored thing (an evaluation's numbers, the prepared data): the
modules that compute it and every package module they import, each as the syntax tree that runs.

Why not a hand-kept list of files: a helper that the computing code comes to import would sit outside the
list, and a change there would reuse old results under a key that says nothing changed. Following the
imports, a new helper is keyed the day it is imported; only modules named as bookkeeping (files, paths,
parameters keyed by value…) are neither hashed nor followed. Docstrings and comments are left out, so
rewording them or reflowing a line keeps every stored result, while any change to what runs stales them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Collection, Iterable


def module_file(package: Path, name: str) -> Path | None:
    """The file of module ``name`` (dotted, relative to ``package``), or None if there is none."""
    path = package.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_imports(package: Path, name: str, tree: ast.Module) -> list[str]:
    """The package modules that module ``name`` imports by relative import (inside functions too)."""
    here = name.split(".") if module_file(package, name).name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = here[:len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
        for candidate in [base] + [base + [alias.name] for alias in node.names]:
            if candidate and module_file(package, ".".join(candidate)):
                found.add(".".join(candidate))
    return sorted(found)


def _without_docstrings(tree: ast.Module) -> ast.Module:
    """The tree less its docstrings: with comments (which ``ast`` drops) they explain, never compute."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=512)
def _module_code(package: Path, name: str, path: Path, mtime_ns: int, size: int) -> tuple[str, list[str]]:
    """A module's code as it runs (its syntax tree without docstrings) and the package modules it imports;
    cached by file stat, since keys are computed many times per process."""
    tree = ast.parse(path.read_text())
    return ast.dump(_without_docstrings(tree)), _package_imports(package, name, tree)


def reached_modules(package: Path, roots: Iterable[str], bookkeeping: Collection[str]) -> dict[str, str]:
    """``roots`` and, transitively, every module of ``package`` they import, except those whose top-level
    name is in ``bookkeeping``, each with its code as it runs; sorted by name."""
    todo = list(roots)
    found: dict[str, str] = {}
    while todo:
        name = todo.pop()
        path = module_file(package, name)
        if name in found or name.split(".")[0] in bookkeeping or path is None:
            continue
        stat = path.stat()
        found[name], imports = _module_code(package, name, path, stat.st_mtime_ns, stat.st_size)
        todo += imports
    return dict(sorted(found.items()))


def code_identity(package: Path, roots: Iterable[str], bookkeeping: Collection[str]) -> str:
    """sha256 (hex) of the code ``reached_modules`` finds, module names included."""
    digest = hashlib.sha256()
    for name, code in reached_modules(package, roots, bookkeeping).items():
        digest.update(f"{name}\n{code}\n".encode())
    return digest.hexdigest()
