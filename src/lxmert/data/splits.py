"""Named splits -> data files, the one rule every task uses.

A split name is a file under the task's folder of the data root: `train` ->
`DATA/vqa/train.json`. A name with a suffix (`.json`, `.jsonl`) is a path: absolute, or
relative to the data root (`--split my/extra.json`). Several names may be given as a list
or comma-separated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

__all__ = ["split_paths"]

_SUFFIXES = (".json", ".jsonl")


def split_paths(folder: str | os.PathLike, splits: str | Sequence[str], *, suffix: str = ".json",
                data_root: str | os.PathLike | None = None, what: str = "split") -> list[Path]:
    """The files of `splits` (see the module docstring); a missing one is an error naming
    the file and the splits that exist. `data_root` anchors names given with a suffix
    (default: `folder`); `what` names the task in messages."""
    folder = Path(folder)
    anchor = Path(data_root) if data_root is not None else folder
    names = [n.strip() for n in splits.split(",")] if isinstance(splits, str) else [str(n).strip() for n in splits]
    out = []
    for name in names:
        if not name:
            continue
        if name.endswith(_SUFFIXES):
            path = Path(name).expanduser()
            path = path if path.is_absolute() else anchor / path
        else:
            path = folder / f"{name}{suffix}"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []
            raise FileNotFoundError(f"{what} {name!r}: {path} does not exist (splits in {folder}: "
                                    f"{', '.join(known) or 'none'})")
        out.append(path)
    if not out:
        raise ValueError(f"no {what} named in {splits!r}")
    return out
