"""A general image-text JSONL format for your own pre-training data.

One JSON object per line::

    {"img_id": "COCO_val2014_000000000042", "text": "a man riding a horse."}
    {"img_id": "my_img_7", "text": "what is he riding?", "answers": {"horse": 1.0, "pony": 0.3},
     "source": "myqa"}

`img_id` and `text` are required; `answers` ({answer: score}) makes the line a question
with a QA target; `source` (default "jsonl") lets `sources=` select lines, like the
sources of the release's json. Blank lines are skipped. Errors name the file and line.
`PretrainingDataset` reads `.jsonl` files with this reader, so they produce exactly the
same examples as the release's `lxmert/*.json`; `convert_pretrain_json` turns one into
the other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Collection, Iterable, Iterator

from lxmert.data.sources import DataFormatError, TextExample, read_pretrain_json
from lxmert.atomic import atomic_open

__all__ = ["read_jsonl", "read_examples", "iter_image_text_lines", "write_jsonl", "convert_pretrain_json",
           "DEFAULT_SOURCE"]

DEFAULT_SOURCE = "jsonl"


def iter_image_text_lines(path: str | os.PathLike) -> Iterator[tuple[str, int, dict]]:
    """(where, line number, object) for each non-blank line of an image-text JSONL file.

    Every object is checked for what all our JSONL formats share (a JSON object with an
    `img_id` string/int and a `text` string); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    with open(path, "rb") as handle:
        for lineno, raw_line in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{where}: not UTF-8 text ({err})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise DataFormatError(f"{where}: expected an object, got {type(obj).__name__}")
            for key in ("img_id", "text"):
                if key not in obj:
                    raise DataFormatError(f"{where}: missing key {key!r}")
            if not isinstance(obj["text"], str):
                raise DataFormatError(f"{where}: 'text' must be a string")
            if not isinstance(obj["img_id"], (str, int)):
                raise DataFormatError(f"{where}: 'img_id' must be a string")
            yield where, lineno, obj


def read_jsonl(path: str | os.PathLike, sources: Collection[str] | None = None) -> Iterator[TextExample]:
    """Yield the examples of a JSONL file (streaming; constant memory)."""
    for where, _, obj in iter_image_text_lines(path):
        source = obj.get("source", DEFAULT_SOURCE)
        if sources is not None and source not in sources:
            continue
        answers = obj.get("answers")
        if answers is not None:
            if not isinstance(answers, dict) or not all(
                    isinstance(a, str) and isinstance(s, (int, float)) for a, s in answers.items()):
                raise DataFormatError(f"{where}: 'answers' must be an object {{answer: score}}")
            answers = {a: float(s) for a, s in answers.items()}
        yield TextExample(str(obj["img_id"]), str(source), obj["text"], answers, where)


def write_jsonl(path: str | os.PathLike, examples: Iterable[TextExample]) -> int:
    """Write examples as JSONL (atomically); returns the number of lines."""
    count = 0
    with atomic_open(path, "w", encoding="utf-8") as handle:
        for ex in examples:
            obj: dict = {"img_id": ex.img_id, "text": ex.sent, "source": ex.source}
            if ex.label is not None:
                obj["answers"] = ex.label
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
            count += 1
    return count


def convert_pretrain_json(src: str | os.PathLike, dst: str | os.PathLike,
                          sources: Collection[str] | None = None) -> int:
    """Rewrite a release pre-training json as JSONL (same examples); returns the line count."""
    return write_jsonl(dst, read_pretrain_json(src, sources))


def read_examples(path: str | os.PathLike, sources: Collection[str] | None = None) -> Iterator[TextExample]:
    """Examples of a pre-training file: `.jsonl` is the JSONL format, anything else release json."""
    if str(path).endswith(".jsonl"):
        return read_jsonl(path, sources)
    return read_pretrain_json(path, sources)
