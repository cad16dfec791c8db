"""One writer per output: an exclusive lock the kernel holds for the writing process.

`exclusive(directory)` takes `DIRECTORY/.edgecond.lock` (`exclusive(file, own_dir=False)`:
`.NAME.lock` beside the file) with `fcntl.flock`, writes the holder's pid into it and removes it
on release. A second process gets `OutputLocked` at once, naming the holder's pid. The kernel
drops the lock when its process dies, so the lock of a killed run (SIGKILL, a power cut) is
taken over by the next one without any stale-lock guessing. Both halves use it: `edgecond`
(condense, export, continual) and the device's `regenerate` -- hence here, with no dependency.

Where `fcntl` does not exist (Windows) writes are not locked; everything else is unchanged.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

LOCK_NAME = ".edgecond.lock"


class OutputLocked(OSError):
    """Another live process is writing the same output."""


def lock_path(target: str | os.PathLike, own_dir: bool = True) -> Path:
    t = Path(target)
    return t / LOCK_NAME if own_dir else t.parent / f".{t.name}.lock"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "another process"


@contextlib.contextmanager
def exclusive(target: str | os.PathLike, own_dir: bool = True) -> Iterator[Path]:
    """Hold the output `target` (a directory, or with `own_dir=False` a file) for this process.

    Folders made for the lock are removed again on release when nothing else was written there,
    so a run refused inside the lock leaves no trace."""
    path = lock_path(target, own_dir)
    made = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield path
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            # a holder releasing its lock removed the empty folder it had made for it, between our
            # mkdir and our open: make it again and retry
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputLocked(f"{Path(target)} is being written by {holder}: wait for it to finish, "
                               "or choose another output") from None
        # the previous holder removes the file on release: if it did so between our open and our
        # flock, we hold a lock on a file nobody else will find -- open the new one instead
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: see the inode check above
        os.close(fd)
        for p in made:  # deepest first; only empty ones go
            with contextlib.suppress(OSError):
                p.rmdir()
