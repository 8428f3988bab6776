"""Errors that mean "the user asked for something impossible" rather than "swapbench has a bug".

The CLI turns a :class:`UserError` into a one-line message and exit status 2, without a traceback
(``--debug`` shows it). Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input: a bad recipe, an unknown name, a missing file.

    ``str(err)`` is one line that names the problem and, where possible, the fix.
    """


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (difflib ratio >= 0.6), or None."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close candidate exists, else an empty string."""
    match = closest(name, candidates)
    return f" (did you mean '{match}'?)" if match else ""
