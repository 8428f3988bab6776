"""Output paths checked before any work: a command that would fail to write its result at the end
fails at the start instead, with one line naming the path and the fix."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from swapbench.errors import UserError


def _first_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def writable_folder(path: str | Path, what: str, keep: bool = False) -> Path:
    """Check that files can be written in the folder ``path``; the folders this creates to find out
    are removed again unless ``keep`` (so a check that passes leaves nothing behind either)."""
    path = Path(path)
    existing = _first_existing(path)
    if not existing.is_dir():
        raise UserError(f"{what} {path} cannot be a folder: {existing} is a file; give a folder path")
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".swapbench-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable ({exc.strerror or exc}); give a folder you can write to") from None
    finally:
        if not keep:
            for folder in created:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return path


def writable_file(path: str | Path, what: str, suffixes: tuple[str, ...] | None = None, force: bool = True) -> Path:
    """Check that the file ``path`` can be written: a known suffix, not a folder, its folder
    writable, and, without ``force``, not already there. A folder this has to create to find out is
    removed again: the writer creates it (:func:`make_parent`) when it writes, so a command that fails
    on another input after this check leaves no empty folder behind."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{what} {path} must end in {' or '.join(suffixes)}; give such a file name")
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name inside it, e.g. {path / ('out' + (suffixes or ('',))[0])}")
    if path.exists() and not force:
        raise UserError(f"{what} {path} already exists; pass --force to overwrite it, or give another name")
    writable_folder(path.parent, f"the folder of {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {path} is not writable; give another file name")
    return path


def make_parent(path: str | Path) -> Path:
    """``path``, after creating its folder (which :func:`writable_file` checked but did not keep)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
