"""Crash-safe files: atomic writes and an exclusive lock on a run directory.

Every file npgan and its examples write goes through :func:`atomic_write`: the
bytes go to a temporary file beside the target (``.NAME.tmp-PID-N``), are
flushed to disk, and only then renamed over the target, so a crash, a kill or
a full disk leaves either the old file or the new one, never a truncated one.
A failed write removes its temporary file; one left by a killed writer (its PID
no longer running) is removed by the next write of the same file and by
:func:`remove_stale_temps`, which :func:`lock_dir` runs on the directory it locks.

:func:`lock_dir` holds an OS lock (``flock``; ``msvcrt.locking`` on Windows) on
``DIR/.npgan.lock`` for as long as a run uses the directory. The OS drops it
when the process ends, however it ends, so a ``kill -9`` leaves no stale lock.
"""
import contextlib
import hashlib
import itertools
import os
import re
import socket
import warnings

try:
    import fcntl
except ImportError:                     # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:
    msvcrt = None

LOCK_NAME = ".npgan.lock"
_TMP = re.compile(r"^\..+\.tmp-(\d+)(?:-\d+)?$")     # also the older ".NAME.tmp-PID"
_counter = itertools.count()


class DirectoryLocked(RuntimeError):
    """The run directory is in use by another process."""


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    if os.name == "nt":                 # os.kill(pid, 0) would terminate it there
        return None                     # unknown: the caller tries to remove (fails while open)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                     # EPERM: someone else's live process
        return True
    return True


def _remove_if_stale(path, pid):
    alive = _pid_alive(pid)
    if alive:
        return False
    try:
        os.remove(path)
    except OSError:                     # gone already, or (Windows) still open by its writer
        return False
    return True


def remove_stale_temps(directory, recursive=True):
    """Remove the temporary files of writers that are no longer running from
    ``directory`` (and its subdirectories). Returns the paths removed."""
    removed = []
    for root, dirs, names in os.walk(directory) if recursive else [(directory, [], _listdir(directory))]:
        for name in names:
            m = _TMP.match(name)
            if m and _remove_if_stale(os.path.join(root, name), int(m.group(1))):
                removed.append(os.path.join(root, name))
    return removed


def _listdir(d):
    try:
        return os.listdir(d)
    except OSError:
        return []


def _fsync_dir(d):
    if os.name == "nt":
        return
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)                    # the rename itself survives a power cut
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode="wb", check=None):
    """``with atomic_write(path) as f: f.write(...)``: ``path`` gets all of
    what was written, or (on any error, in the block or while writing) keeps
    its old content and no temporary file is left. ``mode``: "wb" or "w"
    (text, UTF-8). ``check(tmp_path)``, if given, may raise to refuse the file before it
    replaces the old one. Creates the parent directory."""
    path = os.fspath(path)
    d, base = os.path.split(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    for name in _listdir(d):            # what an earlier, killed writer of this file left
        m = _TMP.match(name)
        if m and name.startswith(f".{base}.tmp-"):
            _remove_if_stale(os.path.join(d, name), int(m.group(1)))
    tmp = os.path.join(d, f".{base}.tmp-{os.getpid()}-{next(_counter)}")
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', not {mode!r}")
    binary = mode == "wb"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(d)


def write_text(path, text):
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return path


def save_figure(fig, path, **kwargs):
    """``fig.savefig(path, **kwargs)`` through :func:`atomic_write` (format
    from the extension)."""
    with atomic_write(path) as f:
        fig.savefig(f, format=os.path.splitext(path)[1][1:] or "png", **kwargs)
    return path


@contextlib.contextmanager
def lock_dir(directory):
    """Hold an exclusive lock on ``directory`` (created if missing) for the
    ``with`` block; raises DirectoryLocked naming the PID that holds it. Then
    removes the temporary files that dead writers left in it."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_NAME)
    f = open(path, "a+b")
    try:
        try:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif msvcrt is not None:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)   # byte 0; the owner is written after it
            else:
                warnings.warn(f"no file locking on this platform: nothing stops a second run in {directory}")
        except OSError:
            f.seek(1 if fcntl is None else 0)
            owner = f.read(200).decode("utf-8", "replace").strip() or "unknown"
            raise DirectoryLocked(f"{directory} is in use by another run (PID {owner}); wait for it "
                                  "to finish, or use another directory") from None
        f.seek(1 if fcntl is None else 0)
        f.truncate()
        f.write(f"{os.getpid()} on {socket.gethostname()}\n".encode())
        f.flush()
        remove_stale_temps(directory)
        yield path
    finally:
        f.close()                       # closing the file drops the lock


def sha256(path):
    """Hex SHA-256 of the file at ``path``, read in 1 MiB chunks (records which
    weights a result came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
