"""Named splits -> data files, the one rule every task uses; and holding out a validation
split by image (`lxmert split`).

A split name is a file under the task's folder of the data root: `train` ->
`DATA/vqa/train.json`. A name with a suffix (`.json`, `.jsonl`) is a path: absolute, or
relative to the data root (`--split my/extra.json`). Several names may be given as a list
or comma-separated.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lxmert.atomic import atomic_write_text
from lxmert.errors import DataFormatError

__all__ = ["split_paths", "hold_out_by_image", "HeldOut", "IMAGE_KEYS"]

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


#: the field naming an entry's image, per file format (release VQA/GQA/pre-training and
#: classification JSONL: img_id; VizWiz: image; A-OKVQA: image_id; NLVR2: the left image)
IMAGE_KEYS = ("img_id", "image_id", "image", "img0")


@dataclass
class HeldOut:
    """What `hold_out_by_image` wrote: the two files and their entry and image counts."""

    fit: Path
    held: Path
    fit_entries: int
    held_entries: int
    fit_images: int
    held_images: int


def _image_key(entry: Any, where: str) -> str:
    if isinstance(entry, dict):
        for key in IMAGE_KEYS:
            if key in entry:
                return str(entry[key])
    raise DataFormatError(f"{where}: no image field ({', '.join(IMAGE_KEYS)})")


def _held(image: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{image}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def hold_out_by_image(path: str | os.PathLike, fraction: float, *, seed: int = 0,
                      out_dir: str | os.PathLike | None = None) -> HeldOut:
    """Split a split file into a fit part and a held-out validation part BY IMAGE (no image
    in both, so validation measures generalisation to unseen images, not to new questions
    about seen ones). Each image is held out with probability `fraction`, decided by a hash
    of (seed, image id): the same files for the same input on any machine.

    Writes `<stem>.fit<suffix>` and `<stem>.held<suffix>` (json lists or JSONL, as the input)
    into `out_dir` (default: beside the input), atomically; use them as `data.train` and
    `data.valid` splits."""
    path = Path(path)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    jsonl = path.suffix == ".jsonl"
    try:
        text = path.read_text(encoding="utf-8")
        entries = [json.loads(line) for line in text.splitlines() if line.strip()] if jsonl else json.loads(text)
    except FileNotFoundError:
        raise FileNotFoundError(f"split file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not valid {'JSON lines' if jsonl else 'JSON'} ({err})") from None
    if not isinstance(entries, list) or not entries:
        raise DataFormatError(f"{path}: expected a non-empty list of entries")
    fit: list[Any] = []
    held: list[Any] = []
    images: dict[bool, set[str]] = {False: set(), True: set()}
    for i, entry in enumerate(entries):
        image = _image_key(entry, f"{path}: entry {i}")
        side = _held(image, fraction, seed)
        images[side].add(image)
        (held if side else fit).append(entry)
    if not fit or not held:
        raise ValueError(f"{path}: holding out {fraction:.0%} of {len(images[False] | images[True])} images "
                         f"left one side empty; use a larger fraction or more images")
    folder = Path(out_dir) if out_dir is not None else path.parent
    out = []
    for name, part in (("fit", fit), ("held", held)):
        target = folder / f"{path.stem}.{name}{path.suffix}"
        body = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in part) if jsonl \
            else json.dumps(part, ensure_ascii=False) + "\n"
        atomic_write_text(target, body)
        out.append(target)
    return HeldOut(out[0], out[1], len(fit), len(held), len(images[False]), len(images[True]))
