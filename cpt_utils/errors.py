"""The project's error family: failures a user can act on, as opposed to bugs.

Every module raises a subclass of ``CptError`` for bad input (a parameter file, a corpus, a missing
asset or checkpoint). The ``cpt`` command prints each problem of such an error as one ``error:`` line
and exits non-zero without a traceback; anything else is a bug, still reported in one line, with
``--debug`` (or ``CPT_DEBUG=1``) to see the traceback.
"""

from __future__ import annotations

from typing import Sequence


class CptError(Exception):
    """Base of every expected failure; ``problems`` lists what is wrong, one self-contained line each."""

    def __init__(self, message: str = "", problems: Sequence[str] | None = None):
        super().__init__(message)
        self._problems = list(problems) if problems is not None else None

    @property
    def problems(self) -> list[str]:
        """One line per problem (a multi-line message without an explicit list splits on its lines)."""
        if self._problems is not None:
            return list(self._problems)
        lines = [ln.strip().removeprefix("- ").strip() for ln in str(self).splitlines()]
        return [ln for ln in lines if ln] or [type(self).__name__]


class DataError(CptError):
    """A corpus or prepared data cannot be used: nothing readable, everything removed, a missing file."""


def error_lines(err: BaseException) -> list[str]:
    """The lines the CLI prints for ``err`` (without the ``error:`` prefix)."""
    if isinstance(err, CptError):
        return err.problems
    text = " ".join(str(err).split()) or "(no message)"
    return [f"unexpected {type(err).__name__}: {text} (rerun with --debug or CPT_DEBUG=1 for the traceback)"]
