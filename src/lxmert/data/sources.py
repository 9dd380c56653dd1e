"""Readers of pre-training text: the release's `lxmert/*.json` files.

A pre-training file is a list of images, each
`{"img_id": str, "sentf": {source: [sent, ...]}, "labelf": {source: [{answer: score}, ...]}}`
where `labelf[source][k]` labels `sentf[source][k]` (question sources only). Every
sentence of every source is one example. The JSONL format of `lxmert.data.jsonl` yields
the same `TextExample`s, so the dataset does not care which one it reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Collection, Iterator, NamedTuple

from lxmert.errors import DataFormatError

__all__ = ["TextExample", "DataFormatError", "read_pretrain_json"]


class TextExample(NamedTuple):
    """One (image, sentence) pair; `label` is {answer: score} for questions, else None."""

    img_id: str
    source: str
    sent: str
    label: dict[str, float] | None
    where: str  # "file: entry N" - for error messages


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"data file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not valid JSON ({err})") from None


def read_pretrain_json(path: str | os.PathLike, sources: Collection[str] | None = None) -> Iterator[TextExample]:
    """Yield the examples of one release pre-training json, optionally only some sources."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a list of images, got {type(data).__name__}")
    for index, entry in enumerate(data):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict):
            raise DataFormatError(f"{where}: expected an object, got {type(entry).__name__}")
        for key in ("img_id", "sentf"):
            if key not in entry:
                raise DataFormatError(f"{where} (img_id {entry.get('img_id')!r}): missing key {key!r}")
        img_id = str(entry["img_id"])
        where = f"{where} (img_id {img_id!r})"
        sentf = entry["sentf"]
        labelf = entry.get("labelf", {})
        if not isinstance(sentf, dict) or not isinstance(labelf, dict):
            raise DataFormatError(f"{where}: 'sentf' and 'labelf' must be objects")
        for source, sents in sentf.items():
            if sources is not None and source not in sources:
                continue
            if not isinstance(sents, list):
                raise DataFormatError(f"{where}: sentf[{source!r}] must be a list")
            labels = labelf.get(source)
            if labels is not None and (not isinstance(labels, list) or len(labels) != len(sents)):
                raise DataFormatError(
                    f"{where}: labelf[{source!r}] must be a list aligned with sentf[{source!r}] "
                    f"({len(sents)} sentences, {len(labels) if isinstance(labels, list) else labels!r} labels)"
                )
            for k, sent in enumerate(sents):
                if not isinstance(sent, str):
                    raise DataFormatError(f"{where}: sentf[{source!r}][{k}] is not a string")
                label = None
                if labels is not None:
                    label = labels[k]
                    if not isinstance(label, dict):
                        raise DataFormatError(f"{where}: labelf[{source!r}][{k}] must be an {{answer: score}} object")
                yield TextExample(img_id, source, sent, label, where)
