"""The ``predict`` output folder: one run at a time, all-or-nothing image outputs, clean-up.

* **Lock**: ``OUT/.bayescellseg.lock`` holds the PID, host and start time of the run writing
  into the folder. A second run stops with a message naming it; a lock whose process is gone
  (a killed run) is taken over.
* **Staging**: an image's files are written into ``OUT/.bayescellseg-staging/NAME/``; when all
  are there, a ``.complete`` marker is written and the files are moved into ``OUT``. A run that
  is killed while moving leaves the marker behind, and the next run finishes the move; a
  staging folder without the marker (killed while computing or writing) is deleted. So an
  image's outputs appear all together or not at all.
* **Leftovers**: hidden temporary files of :func:`~bayescellseg.io.atomic.atomic_path`
  (``.NAME.XXXXXXXX.tmp.EXT``) left by a killed run are removed at the next run.
* **Writability**: the folder is created and probed (a small file is written and removed)
  before the first image, and its free space is checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bayescellseg.errors import OutputError

LOCK_NAME = ".bayescellseg.lock"
STAGING_NAME = ".bayescellseg-staging"
COMPLETE_MARKER = ".complete"
MIN_FREE_BYTES = 32 * 2**20
"""Free space an output folder needs before the first image (each image is checked too)."""

_TMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
_YOUNG_LOCK_S = 30.0  # an unreadable lock younger than this is being written by its owner


def _pid_alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False  # our own PID in an old lock: that run is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def _read_lock(path: Path) -> dict | None:
    """The lock's content, or None when it cannot be parsed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _is_stale(path: Path, holder: dict | None) -> bool:
    """Whether the lock's run is certainly gone (dead PID on this host, or an old broken file)."""
    if holder is None:
        try:
            return time.time() - path.stat().st_mtime > _YOUNG_LOCK_S
        except OSError:
            return True  # vanished meanwhile
    if holder.get("host") != socket.gethostname():
        return False  # another machine: its PIDs cannot be checked from here
    return not _pid_alive(int(holder["pid"]))


def _create_lock(path: Path) -> bool:
    """Create the lock file exclusively; False when it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as err:
        raise OutputError(path, f"cannot create the lock file ({err.strerror or err})") from err
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _busy_error(out_dir: Path, path: Path, holder: dict | None) -> OutputError:
    who = (
        f"PID {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
        if holder
        else "a run that is just starting"
    )
    return OutputError(
        out_dir,
        f"another bayescellseg run ({who}) is writing into this folder; wait for it to finish "
        f"or choose another output folder (if that run no longer exists, delete {path})",
    )


def acquire_lock(out_dir: Path) -> Path:
    """Take the folder's lock (taking over a stale one); return the lock file's path.

    Raises:
        OutputError: Another live run holds the lock, or the lock cannot be written.
    """
    path = Path(out_dir) / LOCK_NAME
    for _ in range(5):
        if _create_lock(path):
            return path
        holder = _read_lock(path)
        if not _is_stale(path, holder):
            raise _busy_error(Path(out_dir), path, holder)
        # stale: move it aside (atomic; only one contender wins), check it is the one judged
        aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        if _read_lock(aside) != holder:  # someone else took it over in between: give it back
            with contextlib.suppress(OSError):
                os.link(aside, path)
            aside.unlink(missing_ok=True)
            raise _busy_error(Path(out_dir), path, _read_lock(path))
        aside.unlink(missing_ok=True)
    raise OutputError(path, "could not take over the lock file; delete it if no run is active")


def release_lock(path: Path) -> None:
    """Remove the lock if it is still ours."""
    holder = _read_lock(path)
    if holder is not None and holder.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[Path]:
    """Hold the output folder's lock for the duration of the block."""
    path = acquire_lock(out_dir)
    try:
        yield path
    finally:
        release_lock(path)


def check_writable(out_dir: Path, need_bytes: int = MIN_FREE_BYTES) -> None:
    """Create ``out_dir`` if needed, write and remove a probe file, check the free space.

    Raises:
        OutputError: The folder cannot be created or written, or has too little free space.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        problem = err.strerror or str(err)
        raise OutputError(out_dir, f"cannot create the output folder ({problem})") from err
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".bayescellseg-probe-"):
            pass
    except OSError as err:
        problem = err.strerror or str(err)
        raise OutputError(out_dir, f"cannot write into the output folder ({problem})") from err
    check_free_space(out_dir, need_bytes, "before the first image")


def check_free_space(out_dir: Path, need_bytes: int, what: str) -> None:
    """Raise OutputError when ``out_dir``'s file system has less than ``need_bytes`` free."""
    free = shutil.disk_usage(out_dir).free
    if free < need_bytes:
        raise OutputError(
            out_dir,
            f"not enough free space {what}: about {need_bytes / 2**20:.1f} MiB needed, "
            f"{free / 2**20:.1f} MiB free",
        )


def staging_dir(out_dir: Path, name: str) -> Path:
    """A fresh, empty staging folder for image ``name``."""
    folder = Path(out_dir) / STAGING_NAME / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _move_in(folder: Path, out_dir: Path, names: list[str]) -> None:
    for name in names:
        source = folder / name
        if source.exists():
            os.replace(source, out_dir / name)
    _fsync_dir(out_dir)
    (folder / COMPLETE_MARKER).unlink(missing_ok=True)
    folder.rmdir()


def commit(folder: Path, out_dir: Path, names: list[str]) -> None:
    """Mark a staging folder complete and move its files into ``out_dir`` (in ``names`` order).

    Raises:
        OutputError: A file cannot be moved (it is named).
    """
    for name in names:
        if not (folder / name).is_file():
            raise OutputError(out_dir / name, "was not written")
    try:
        _fsync_dir(folder)
        marker = folder / COMPLETE_MARKER
        with open(marker, "wb") as fh:
            os.fsync(fh.fileno())
        _move_in(folder, out_dir, names)
    except OSError as err:
        where = Path(err.filename) if err.filename else folder
        problem = err.strerror or str(err)
        raise OutputError(out_dir / where.name, f"cannot move into place ({problem})") from err


def discard(folder: Path) -> None:
    """Remove a staging folder (after a failure)."""
    shutil.rmtree(folder, ignore_errors=True)


def recover(out_dir: Path) -> list[str]:
    """Finish or remove what an interrupted run left in ``out_dir`` (call it under the lock).

    Returns:
        One line per thing done, for the log.
    """
    out_dir = Path(out_dir)
    notes: list[str] = []
    root = out_dir / STAGING_NAME
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if (folder / COMPLETE_MARKER).is_file():
                names = sorted(p.name for p in folder.iterdir() if p.name != COMPLETE_MARKER)
                _move_in(folder, out_dir, names)
                notes.append(f"finished moving in the outputs of {folder.name} (interrupted run)")
            else:
                shutil.rmtree(folder, ignore_errors=True)
                notes.append(f"removed the incomplete outputs of {folder.name} (interrupted run)")
        with contextlib.suppress(OSError):
            root.rmdir()
    leftovers = [p for p in out_dir.iterdir() if _TMP_PATTERN.match(p.name) and p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        notes.append(f"removed {len(leftovers)} temporary file(s) left by an interrupted run")
    return notes


def finish(out_dir: Path) -> None:
    """Remove the (empty) staging root at the end of a run."""
    with contextlib.suppress(OSError):
        (Path(out_dir) / STAGING_NAME).rmdir()
