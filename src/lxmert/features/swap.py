"""Putting a finished store in place: temporary and old directories, the swap, recovery.

An import writes into ``<out>.tmp-<pid>-XXXX`` beside ``<out>``; replacing an existing
store renames it to ``<out>.old-<pid>-XXXX``, renames the new one to ``<out>`` and then
removes the old one. The owner's process id is part of both names because a killed
import runs no clean-up: the next import (or :class:`~lxmert.features.store.FeatureStore`
opening a missing ``<out>``) can then tell a dead owner's leftovers from a running
import's work, and

* removes ``.tmp-`` directories of dead owners (partial stores, possibly GBs),
* restores the old store when a kill fell between the two renames (``<out>`` missing,
  ``<out>.old-<pid>-XXXX`` present): the interrupted import did not finish, so the store
  that was there before stays,
* removes ``.old-`` directories of dead owners once ``<out>`` exists (the kill fell during
  the final removal),
* names - but does not touch - anything whose owner is alive or unknown (directories from
  before owner ids were recorded).

Process ids are only meaningful on one host: on a directory shared between machines, an
import running elsewhere looks dead from here.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lxmert.features.format import MANIFEST, StoreFormatError, read_manifest

__all__ = ["Leftover", "find_leftovers", "make_temp_dir", "owner_alive", "recover", "remove_store_dir",
           "swap_into_place"]


@dataclass(frozen=True)
class Leftover:
    """A sibling directory of a store left by an import: ``kind`` is ``"tmp"`` or ``"old"``."""

    path: Path
    kind: str
    pid: int | None  # None: made before owner ids were recorded


def make_temp_dir(out: Path) -> Path:
    """Create the import's working directory ``<out>.tmp-<pid>-XXXX`` beside ``out``."""
    return Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-{os.getpid()}-", dir=out.parent))


def find_leftovers(out: Path) -> list[Leftover]:
    """Temporary and old directories of imports into ``out`` (any owner)."""
    pattern = re.compile(rf"{re.escape(out.name)}\.(tmp|old)-(?:(\d+)-)?[^/]+")
    found = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return []
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink():
            found.append(Leftover(p, m.group(1), int(m.group(2)) if m.group(2) else None))
    return sorted(found, key=lambda x: x.path.name)


def owner_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie counts as dead)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] in "ZX":
            return False
    return True


def remove_store_dir(path: Path) -> None:
    """Delete a store-like directory, manifest first: a removal cut short by a kill must
    never leave a directory that still opens as a store. A symlink is removed, never
    followed (its target may be someone's store)."""
    if path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()
        return
    with contextlib.suppress(OSError):
        (path / MANIFEST).unlink()
    shutil.rmtree(path, ignore_errors=True)


def _describe(left: Leftover) -> str:
    owner = "owner unknown, made by an older lxmert" if left.pid is None else f"import pid {left.pid} still running"
    return f"{left.path}: left as is ({owner}); delete it if no import into this store is running"


def recover(out: Path, tidy: bool = True) -> list[str]:
    """Repair what interrupted imports into ``out`` left; returns one note per action.

    Restores ``out`` from an old directory when ``out`` is missing; with ``tidy`` (the
    importer) also removes dead owners' temporary and old directories and names the
    leftovers it cannot attribute. Safe to call at any time and from several processes at
    once (a lost rename race is ignored).
    """
    notes: list[str] = []
    leftovers = find_leftovers(out)
    dead = [x for x in leftovers if x.pid is not None and not owner_alive(x.pid)]
    if not out.exists():
        # most recently renamed first: st_ctime changes on rename
        olds = sorted((x for x in dead if x.kind == "old"), key=lambda x: _ctime(x.path), reverse=True)
        for old in olds:
            try:
                read_manifest(old.path)
            except (StoreFormatError, OSError):
                continue  # a removal cut short: not a store any more
            try:
                os.rename(old.path, out)
            except FileNotFoundError:
                continue  # another process restored it first
            except OSError:
                if out.exists():
                    break
                raise
            notes.append(f"{out}: restored the previous store from {old.path.name} "
                         f"(import pid {old.pid} was killed while replacing it)")
            break
    if not tidy:
        return notes
    for left in dead:
        if left.path.exists() and (left.kind == "tmp" or out.exists()):
            remove_store_dir(left.path)
            what = "partial import" if left.kind == "tmp" else "replaced store"
            notes.append(f"{left.path}: removed ({what} of dead process {left.pid})")
    notes.extend(_describe(x) for x in leftovers if x not in dead and x.path.exists())
    return notes


def _ctime(path: Path) -> float:
    try:
        return path.stat().st_ctime
    except OSError:
        return 0.0


def swap_into_place(tmp: Path, out: Path, replace: bool) -> None:
    """Rename the finished store ``tmp`` to ``out``, replacing an existing store if ``replace``.

    The previous store is renamed aside first (``<out>.old-<pid>-XXXX``) and removed only
    once the new one is in place; a failure in between puts it back, a kill in between is
    repaired by :func:`recover`.
    """
    old = None
    if out.exists():
        if not replace:
            raise FileExistsError(f"{out} appeared during the import; not replacing it")
        while old is None or old.exists():
            old = out.parent / f"{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.rename(old, out)
        raise
    with contextlib.suppress(OSError):
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if old is not None:
        remove_store_dir(old)
