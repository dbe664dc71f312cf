"""Committed notebooks carry no outputs: check (tests, CI) and strip (``make strip``).

Outputs in git make diffs unreadable and smuggle results that no run produced; the report of a run is
its rendered HTML, never the committed notebook.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .atomic import atomic_write

REQUIRED_METADATA = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}}


def problems(path: Path) -> list[str]:
    """What is wrong with a committed notebook (empty list: clean)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count")):
            found.append(f"{path.name}: cell {i} has outputs or an execution count")
    meta = nb.get("metadata", {})
    if meta.get("kernelspec", {}).get("name") != "python3" or "language_info" not in meta:
        found.append(f"{path.name}: kernelspec/language_info metadata missing (papermill needs them)")
    tagged = [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        found.append(f"{path.name}: needs exactly one cell tagged 'parameters' (found {len(tagged)})")
    return found


def strip(path: Path) -> None:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k in REQUIRED_METADATA}
    nb["metadata"] = {**REQUIRED_METADATA, **meta}
    atomic_write(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strip", action="store_true", help="remove outputs in place instead of checking")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    bad = []
    for path in args.notebooks:
        if args.strip:
            strip(path)
        bad += problems(path)
    print("\n".join(bad) or "notebooks are clean")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
