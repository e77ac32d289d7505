"""Writing files safely: atomic writes, the temporaries of killed runs, and output checks made before any work.

Every write of the toolkit goes through :func:`atomic_path` (a temporary file in the same folder, renamed over the
output only when complete), :func:`atomic_paths` (several outputs renamed together) or, for an output that is a
folder, :func:`atomic_folder` (a temporary folder swapped in). Temporaries carry the writing process's id
(``.<stem>.a2k-<pid>.<random><ext>`` beside the output), so a later run removes those of processes that were killed
(:func:`clean_stale_temporaries`, :func:`clean_stale_folders`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import InputError

PathLike = str | os.PathLike
_UMASK = os.umask(0)
os.umask(_UMASK)

_TEMP_PID = re.compile(r"\.a2k-(\d+)\.")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (another user's process counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def clean_stale_temporaries(folder: PathLike, stem: str | None = None) -> int:
    """Remove the temporary files that killed processes left in ``folder`` (those of ``stem``'s output only, when
    given): files named ``.<stem>.a2k-<pid>.*`` whose process no longer runs. Returns how many were removed."""
    folder = Path(folder)
    removed = 0
    try:
        candidates = list(folder.glob(f".{glob.escape(stem)}.a2k-*" if stem is not None else ".*.a2k-*"))
    except OSError:
        return 0
    for tmp in candidates:
        m = _TEMP_PID.search(tmp.name[len(stem) + 1 :] if stem is not None else tmp.name)
        if m and tmp.is_file() and not tmp.is_symlink() and not pid_alive(int(m[1])):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def _temp_beside(path: Path, suffix: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent, path.stem)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.a2k-{os.getpid()}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the permissions a plain open() would
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``, on error removed.

    The temporary file keeps ``path``'s extension (tools such as ffmpeg pick the format from it). Temporaries of
    ``path`` left by killed processes are removed first.
    """
    path = Path(path)
    tmp_path = _temp_beside(path, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block: a signal that comes meanwhile is noted and raised again once the
    block is over, so its handler (a KeyboardInterrupt, or the default exit) runs after the block, not inside it.

    Python-level handlers, not a signal mask: a process-directed signal goes to any thread that does not block it
    (torch's worker threads), and Python runs its handlers in the main thread whichever thread took the signal.
    Only the main thread can set handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not None:  # None: a handler set from C, which cannot be put back
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


@contextlib.contextmanager
def atomic_paths(*paths: PathLike | None) -> Iterator[list[Path | None]]:
    """:func:`atomic_path` for several outputs that belong together: yields one temporary per path (None for a
    None path); only when the block succeeds are they renamed, one right after the other, so a run killed while
    writing leaves every previous output as it was."""
    temps: list[Path | None] = []
    try:
        for p in paths:
            temps.append(None if p is None else _temp_beside(Path(p)))
        yield temps
        with _signals_deferred():  # a Ctrl-C or SIGTERM between the renames would leave a mixed set
            for p, tmp in zip(paths, temps):
                if tmp is not None:
                    os.replace(tmp, p)
    except BaseException:
        for tmp in temps:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------------- atomic folders


def clean_stale_folders(target: PathLike) -> None:
    """Remove the temporary folders of ``target`` that killed writers left (``.<name>.a2k-<pid>.*``, see
    :func:`atomic_folder`); a previous output that a kill caught between the two renames of the swap (``*.old``,
    ``target`` gone) is put back first."""
    target = Path(target)
    prefix = f".{target.name}.a2k-"
    try:
        leftovers = [p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    except OSError:
        return
    for p in leftovers:
        m = _TEMP_PID.match(p.name[len(target.name) + 1 :])
        if not m or p.is_symlink() or pid_alive(int(m[1])):
            continue
        if p.name.endswith(".old") and not target.exists():
            with contextlib.suppress(OSError):
                os.replace(p, target)
                continue
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(
    target: PathLike, *, check: Callable[[Path], None] | None = None, aside: str | None = None
) -> Iterator[Path]:
    """Yield a fresh, empty temporary folder beside ``target`` (with a plain mkdir's permissions); when the block
    succeeds it replaces ``target``, on an error (or a failed swap) it is removed.

    The swap is two renames, the old ``target`` aside and the new one in, after which the old one is removed. Where
    the old one waits between the renames:

    * ``aside=None``: beside its temporary, which is named like every temporary of the toolkit
      (``.<name>.a2k-<pid>.*``, the old folder ``.<name>.a2k-<pid>.*.old``); each write to ``target`` first removes
      those of killed writers and puts back an old folder a kill caught between the renames
      (:func:`clean_stale_folders`);
    * ``aside=NAME``: in the folder ``NAME`` beside ``target`` (one left there is removed first), where a reader of
      ``target`` looks when a crash fell between the renames (a checkpoint's ``.<name>.old``); the temporary is
      ``.<name>.tmp-*`` and nothing is cleaned.

    ``check(target)``, when given, runs before the temporary is made and again before the swap (something may have
    appeared at ``target`` meanwhile), and refuses a ``target`` that must not be replaced by raising.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if aside is None:
        clean_stale_folders(target)
    if check is not None:
        check(target)
    prefix = f".{target.name}.a2k-{os.getpid()}." if aside is None else f".{target.name}.tmp-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700; give the folder a plain mkdir's permissions
    try:
        yield tmp
        if check is not None:
            check(target)
        old = tmp.with_name(tmp.name + ".old") if aside is None else target.parent / aside
        if aside is not None and old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------------- output checks


def check_output_folder(folder: PathLike, *, what: str = "output folder") -> Path:
    """Refuse, before any work starts, a folder that could not hold new files: a file in its place (or in place of
    a parent), or a folder that is read-only, virtual (``/proc``) or not ours. The nearest existing folder is tested
    with one empty probe file, removed at once; no folder is created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write {what}: {folder} is a file, not a folder; choose another path")
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write {what}: {existing} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".a2k-{os.getpid()}.probe.", dir=existing)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(
            f"cannot write {what}: the folder {existing} does not accept new files ({reason}); choose a writable folder"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return folder


def check_output_path(path: PathLike, extensions: tuple[str, ...] | None = None, *, what: str = "output") -> Path:
    """Refuse, before any work starts, an output that could not be written: an unsupported extension, a folder or
    special file in its place, a parent that is a file, or a folder that does not accept new files (read-only,
    ``/proc``, no permission). Writes and removes one empty probe file; creates no folder."""
    path = Path(path)
    if extensions is not None and path.suffix.lower() not in extensions:
        ext = f"unsupported extension {path.suffix!r}" if path.suffix else "no extension"
        use = extensions[0] if len(extensions) == 1 else ", ".join(extensions[:-1]) + " or " + extensions[-1]
        raise InputError(f"{what} {path} has {ext}; use {use}")
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise InputError(f"{what} {path} exists and is not a regular file (a device, FIFO or socket); give a file name")
    check_output_folder(path.absolute().parent, what=f"{what} {path}")
    return path
