"""Karpathy-split caption files: the `dataset_coco.json` / `dataset_flickr30k.json` layout
that image-text retrieval papers evaluate on.

The layout (Karpathy & Fei-Fei's release, used unchanged since)::

    {"dataset": "coco" | "flickr30k" | ...,
     "images": [{"filename": "COCO_val2014_000000391895.jpg", "imgid": 0, "split": "test",
                 "sentences": [{"raw": "A man with a red helmet ...", "tokens": ["a", "man", ...],
                                "imgid": 0, "sentid": 770337}, ...],
                 "sentids": [770337, ...],
                 "filepath": "val2014", "cocoid": 391895},      # these two in COCO only
                ...]}

`split` is "train", "val" or "test", and in COCO also "restval" (the part of COCO val2014
outside the 5k val/test images, usually trained on with "train").

`read_karpathy(path, split, image_key)` parses a file strictly (every error names the file,
the image index and the key) and returns the split's images as feature-store ids with their
sentences. How images are keyed to the store is explicit: `image_key="stem"` (default) uses
the file name without extension - for COCO that is already the id of the LXMERT release's
features ("COCO_val2014_000000391895"), for Flickr30k the usual "1000092795" - and a
`str.format` template over the image's fields keys by anything else, e.g.
"COCO_val2014_{cocoid:012d}" or "{cocoid}".

`image_entry` / `dataset_json` write the same layout (what `lxmert synth` uses for its
retrieval split), with `tokenize` standing in for the original PTB tokenizer.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lxmert.data.sources import DataFormatError

__all__ = ["SPLITS", "STEM", "CaptionSplit", "read_karpathy", "tokenize", "image_entry", "dataset_json"]

#: every split name the files use ("restval": COCO only)
SPLITS: tuple[str, ...] = ("train", "restval", "val", "test")
#: `image_key` value keying an image by its file name without the extension
STEM = "stem"
#: the image fields an `image_key` template may use
KEY_FIELDS: tuple[str, ...] = ("stem", "filename", "filepath", "imgid", "cocoid")

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class CaptionSplit:
    """The images of one or more splits of a Karpathy file and their sentences, in file order.

    `image_ids[i]` is image i's feature-store id (by the keying rule asked for);
    `sentences[j]` (raw text) describes image `sentence_image[j]`, and `sentence_ids[j]` is
    its `sentid` in the file. Retrieval scores every (image, sentence) pair: a pair is a
    positive iff `sentence_image[j] == i`.
    """

    source: str
    splits: tuple[str, ...]
    image_ids: tuple[str, ...]
    sentences: tuple[str, ...]
    sentence_image: tuple[int, ...]
    sentence_ids: tuple[int, ...]

    def image_sentences(self) -> list[list[int]]:
        """For each image, the indices (into `sentences`) of its own sentences."""
        out: list[list[int]] = [[] for _ in self.image_ids]
        for j, i in enumerate(self.sentence_image):
            out[i].append(j)
        return out


def tokenize(raw: str) -> list[str]:
    """Lower-cased words without punctuation, as the files' `tokens` hold them.

    The original files were tokenized by the Stanford PTB tokenizer, then lower-cased with
    punctuation dropped; for plain sentences (letters, digits, spaces, commas and full
    stops, as the generated world's) splitting on everything but letters and digits gives
    the same tokens.
    """
    return _WORD.findall(raw.lower())


def image_entry(filename: str, imgid: int, split: str, sentences: Sequence[str], first_sentid: int, *,
                filepath: str | None = None, cocoid: int | None = None) -> dict[str, Any]:
    """One image of a Karpathy file; its sentences get ids first_sentid, first_sentid + 1, ..."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    sentids = list(range(first_sentid, first_sentid + len(sentences)))
    entry: dict[str, Any] = {}
    if filepath is not None:
        entry["filepath"] = filepath
    entry.update({
        "sentids": sentids,
        "filename": filename,
        "imgid": imgid,
        "split": split,
        "sentences": [{"tokens": tokenize(raw), "raw": raw, "imgid": imgid, "sentid": sid}
                      for raw, sid in zip(sentences, sentids)],
    })
    if cocoid is not None:
        entry["cocoid"] = cocoid
    return entry


def dataset_json(dataset: str, images: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The whole file's object, {"images": [...], "dataset": name}."""
    return {"images": list(images), "dataset": dataset}


def _template_fields(image_key: str) -> list[str]:
    """The fields `image_key` uses; ValueError for a key that is neither "stem" nor a template."""
    if image_key == STEM:
        return ["stem"]
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(image_key) if name is not None]
    except ValueError as err:
        raise ValueError(f"image_key {image_key!r} is not a format template: {err}") from None
    if not names:
        raise ValueError(f"image_key must be {STEM!r} or a template such as 'COCO_val2014_{{cocoid:012d}}', "
                         f"got {image_key!r}")
    bad = [n for n in names if n not in KEY_FIELDS]
    if bad:
        raise ValueError(f"image_key {image_key!r} uses unknown field(s) {bad}; fields: {KEY_FIELDS}")
    return names


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(entry: dict, key: str, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if key not in entry:
        raise DataFormatError(f"{where}: missing key {key!r}")
    value = entry[key]
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        raise DataFormatError(f"{where}: {key!r} must be {what}, got {type(value).__name__}")
    return value


def read_karpathy(path: str | Path, split: str | Sequence[str], image_key: str = STEM) -> CaptionSplit:
    """The images of `split` (a name of `SPLITS`, or several: ("train", "restval")) of the
    Karpathy file at `path`, keyed by `image_key` (see the module docstring).

    The whole file is checked, not only the split asked for: keys and types of every image
    and sentence, `split` names, unique `imgid`, `sentid` and image keys, and - where the file
    has them - per-sentence `imgid` and per-image `sentids` agreeing with the sentences.
    Raises `DataFormatError` naming the file, the image index and the key.
    """
    path = Path(path)
    wanted = (split,) if isinstance(split, str) else tuple(split)
    unknown = [s for s in wanted if s not in SPLITS]
    if unknown or not wanted:
        raise ValueError(f"split must be among {SPLITS}, got {split!r}")
    fields = _template_fields(image_key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: the top level must be an object with 'images', got {type(data).__name__}")
    source = _require(data, "dataset", str, str(path), "a string")
    images = _require(data, "images", list, str(path), "a list")

    image_ids: list[str] = []
    sentences: list[str] = []
    sentence_image: list[int] = []
    sentence_ids: list[int] = []
    seen_imgid: dict[int, int] = {}
    seen_sentid: dict[int, str] = {}
    seen_key: dict[str, int] = {}
    for i, image in enumerate(images):
        where = f"{path}: images[{i}]"
        if not isinstance(image, dict):
            raise DataFormatError(f"{where}: must be an object, got {type(image).__name__}")
        filename = _require(image, "filename", str, where, "a string")
        imgid = _require(image, "imgid", int, where, "an integer")
        image_split = _require(image, "split", str, where, "a string")
        if image_split not in SPLITS:
            raise DataFormatError(f"{where}: 'split' must be one of {SPLITS}, got {image_split!r}")
        sents = _require(image, "sentences", list, where, "a list")
        if imgid in seen_imgid:
            raise DataFormatError(f"{where}: 'imgid' {imgid} repeats images[{seen_imgid[imgid]}]")
        seen_imgid[imgid] = i
        values: dict[str, Any] = {"stem": Path(filename).stem, "filename": filename, "imgid": imgid}
        if "filepath" in image:
            values["filepath"] = _require(image, "filepath", str, where, "a string")
        if "cocoid" in image:
            values["cocoid"] = _require(image, "cocoid", int, where, "an integer")
        for name in fields:
            if name not in values:
                raise DataFormatError(f"{where}: missing key {name!r} (image_key {image_key!r} uses it)")
        try:
            key = values["stem"] if image_key == STEM else image_key.format(**values)
        except (ValueError, TypeError) as err:
            raise DataFormatError(f"{where}: image_key {image_key!r} does not apply: {err}") from None
        if not key:
            raise DataFormatError(f"{where}: image_key {image_key!r} gives an empty id")
        if key in seen_key:
            raise DataFormatError(f"{where}: image id {key!r} (image_key {image_key!r}) repeats "
                                  f"images[{seen_key[key]}]")
        seen_key[key] = i

        ids_here: list[int] = []
        raws: list[str] = []
        for j, sent in enumerate(sents):
            swhere = f"{where}.sentences[{j}]"
            if not isinstance(sent, dict):
                raise DataFormatError(f"{swhere}: must be an object, got {type(sent).__name__}")
            raw = _require(sent, "raw", str, swhere, "a string")
            if not raw.strip():
                raise DataFormatError(f"{swhere}: 'raw' is empty")
            sentid = _require(sent, "sentid", int, swhere, "an integer")
            if sentid in seen_sentid:
                raise DataFormatError(f"{swhere}: 'sentid' {sentid} repeats {seen_sentid[sentid]}")
            seen_sentid[sentid] = f"images[{i}].sentences[{j}]"
            if "tokens" in sent:
                tokens = sent["tokens"]
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise DataFormatError(f"{swhere}: 'tokens' must be a list of strings")
            if "imgid" in sent and sent["imgid"] != imgid:
                raise DataFormatError(f"{swhere}: 'imgid' {sent['imgid']!r} differs from its image's {imgid}")
            ids_here.append(sentid)
            raws.append(raw)
        if "sentids" in image and image["sentids"] != ids_here:
            raise DataFormatError(f"{where}: 'sentids' {image['sentids']!r} differ from its sentences' "
                                  f"sentid {ids_here}")
        if image_split in wanted:
            index = len(image_ids)
            image_ids.append(key)
            sentences.extend(raws)
            sentence_image.extend([index] * len(raws))
            sentence_ids.extend(ids_here)
    return CaptionSplit(source=source, splits=wanted, image_ids=tuple(image_ids), sentences=tuple(sentences),
                        sentence_image=tuple(sentence_image), sentence_ids=tuple(sentence_ids))
