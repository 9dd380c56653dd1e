"""Pre-tokenised sentences in two flat arrays (ids + offsets).

Datasets tokenise every sentence once, at construction, in large batches through the Rust
WordPiece (`encode_batch`), and keep the ids in one flat `uint16` array (the BERT
vocabulary has 30522 < 65536 entries; larger vocabularies use `int32`). Why not tokenise
in `__getitem__`: the per-example cost disappears from every epoch, sentence lengths are
known up front (length bucketing), the random mismatched sentence costs an array slice,
and numpy arrays - unlike lists of Python objects - are shared copy-on-write by forked
DataLoader workers without being touched by reference counting. Real pre-training
(9.18M sentences, ~12 ids each) fits in ~220 MB.

Tokenising millions of sentences still takes minutes, so datasets accept a `token_cache`
directory: the arrays are saved there under a key made of the input files (path, size,
mtime), the selected sources, the vocabulary's bytes and `max_length`, and re-used by
later runs (and by every DDP rank) as long as none of these changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["TokenIndex", "token_cache_path"]

_CACHE_VERSION = 1

_CHUNK = 65536


class TokenIndex:
    """Growable store of token-id sequences; `index[i]` is sequence i as int64."""

    def __init__(self, vocab_size: int) -> None:
        self.dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
        self._parts: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._pending: list[str] = []
        self.ids: np.ndarray = np.zeros(0, dtype=self.dtype)
        self.offsets: np.ndarray = np.zeros(1, dtype=np.int64)

    @classmethod
    def build(cls, tokenizer, texts: Iterable[str], max_length: int) -> "TokenIndex":
        index = cls(tokenizer.vocab_size)
        for text in texts:
            index.add(text, tokenizer, max_length)
        index.finish(tokenizer, max_length)
        return index

    def add(self, text: str, tokenizer, max_length: int) -> None:
        self._pending.append(text)
        if len(self._pending) >= _CHUNK:
            self._flush(tokenizer, max_length)

    def _flush(self, tokenizer, max_length: int) -> None:
        if not self._pending:
            return
        encoded: Sequence[Sequence[int]] = tokenizer.encode_batch(self._pending, max_length=max_length)
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        flat = np.fromiter((t for e in encoded for t in e), dtype=np.int64, count=int(lengths.sum()))
        self._parts.append(flat.astype(self.dtype))
        self._lengths.append(lengths)
        self._pending = []

    def finish(self, tokenizer, max_length: int) -> None:
        """Tokenise what is pending and freeze the arrays."""
        self._flush(tokenizer, max_length)
        if self._parts:
            self.ids = np.concatenate(self._parts)
            lengths = np.concatenate(self._lengths)
            self.offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=self.offsets[1:])
        self._parts, self._lengths = [], []

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]].astype(np.int64)

    # caching ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ids and offsets to an `.npz` atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, ids=self.ids, offsets=self.offsets)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenIndex":
        with np.load(path) as data:
            index = cls.__new__(cls)
            index.ids, index.offsets = data["ids"], data["offsets"]
        index.dtype = index.ids.dtype
        index._parts, index._lengths, index._pending = [], [], []
        if index.offsets.ndim != 1 or len(index.offsets) < 1 or index.offsets[-1] != len(index.ids):
            raise ValueError(f"{path}: damaged token cache (offsets do not match ids)")
        return index


def token_cache_path(cache_dir: str | os.PathLike, kind: str, paths: Sequence[str | os.PathLike],
                     tokenizer, max_length: int, extra: Any = None) -> Path:
    """Where the token arrays of these inputs live in `cache_dir` (the name is a content key)."""
    files = []
    for p in paths:
        st = os.stat(p)
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    vocab = hashlib.sha256(Path(tokenizer.vocab_file).read_bytes()).hexdigest()
    key = json.dumps([_CACHE_VERSION, kind, files, vocab, max_length, extra], sort_keys=True, default=str)
    return Path(cache_dir) / f"{kind}-tokens-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
