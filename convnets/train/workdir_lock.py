"""One training run per workdir: an exclusive lock on `<workdir>/.lock`, held for the whole run.

Two runs sharing a workdir corrupt each other (the second deletes the first's in-progress save as "left by a save
that did not finish"). The lock is a POSIX `flock`, which the operating system releases when the holding process
exits in any way (SIGKILL included), so a dead run never leaves a stale lock behind; the file itself stays and
records who held it last. On multi-host runs only process 0 takes it: the other processes share its fate through
jax.distributed.

A remote workdir (gs://, any URL-like path) has no flock: there the lock is skipped with a warning, and keeping one
run per workdir is the launcher's job (launch/sweep.py gives every run its own workdir).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time

import jax
from absl import logging
from etils import epath

LOCK_FILE = '.lock'


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL-like path of a remote file system (gs://bucket/dir, s3://...), not a local one."""
    return '://' in os.fspath(path)


class WorkdirBusyError(RuntimeError):
    """Another live run holds the workdir."""


class WorkdirLock:
    """`with WorkdirLock(workdir):` — raises WorkdirBusyError naming the holder if another run is active."""

    def __init__(self, workdir: str):
        self.path = epath.Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if jax.process_index() != 0:
            return
        if is_remote(self.path):
            logging.warning('%s is on a remote file system, which has no file locks: nothing stops a second run '
                            'from using this workdir at the same time.', self.path.parent)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(os.fspath(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirBusyError(
                f'The workdir {self.path.parent} is in use by another run ({holder}). Wait for it to finish, stop '
                f'it, or use another --workdir.') from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                                 'since': time.strftime('%Y-%m-%d %H:%M:%S')}).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or '{}')
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, OSError):
        return 'holder unknown'
