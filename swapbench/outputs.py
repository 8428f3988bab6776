"""Output paths checked before any work: a command that would fail to write its result at the end
fails at the start instead, with one line naming the path and the fix."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
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


# errors of a write that the user's machine causes (full disk, quota, read-only or failing device): one line
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}


def write_failed(exc: OSError, path: str | Path | None = None) -> UserError:
    """The one-line error for a write to ``path`` (or the file the OSError names) that failed."""
    where = path if path is not None else (exc.filename or "a file")
    fix = ("free some space on that disk" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
           else "give a path you can write to")
    return UserError(f"cannot write {where}: {exc.strerror or exc}; {fix} and run the command again "
                     f"(any earlier file there is unchanged)")


def os_error_of(exc: Exception, path: str | Path) -> OSError | None:
    """An OSError for a library's write error (safetensors raises its own type naming "os error N" or
    "Os { code: N"); None when the error names no OS error (then it is not the disk's: a bug to show)."""
    match = re.search(r"(?:os error |Os { code: )(\d+)", str(exc))
    if match is None:
        return None
    code = int(match.group(1))
    return OSError(code, os.strerror(code), str(path))


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write the new file to; renamed onto ``path`` when the block
    ends without an error, deleted otherwise, so the previous file stays whole until the new one is.
    ``path`` that is not a regular file (a device such as /dev/stdout or /dev/full, a pipe) is written
    directly. A failed write raises a one-line :class:`UserError`."""
    path = Path(path)
    if path.exists() and not path.is_file():
        try:
            yield path
        except OSError as exc:
            raise write_failed(exc, path) from None
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_for(path))  # mkstemp's 0600 would make every output private
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failed(exc, path) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _mode_for(path: Path) -> int:
    """The permissions ``path`` has, or a new file's under the process's umask."""
    with contextlib.suppress(OSError):
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def replace_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`replacing` (the old file stays whole if the write fails)."""
    with replacing(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)
