"""Text side of the data pipeline: BERT uncased WordPiece and answer tables.

Tokenisation runs in the data pipeline, never inside a model's `forward`. The WordPiece
implementation is the Rust `tokenizers` library (fast, and the same algorithm as
`transformers.BertTokenizer`); we only configure it the way LXMERT used BERT:
lower-case, accents stripped, `[CLS] pieces [SEP]`, at most 20 ids (18 word pieces).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import torch

DEFAULT_MAX_LENGTH = 20
VOCAB_NAME = "vocab.txt"


def packaged_vocab_path() -> Path:
    """Path of the BERT-base uncased vocabulary shipped with the package (see NOTICE)."""
    return Path(str(resources.files("lxmert") / "resources" / VOCAB_NAME))


class LxmertTokenizer:
    """BERT uncased WordPiece, configured as LXMERT used it.

    Call it on a list of sentences to get padded `input_ids / attention_mask /
    token_type_ids` tensors (dynamic padding: to the longest sentence in the batch, never
    to a fixed 20, because padding is work the model would do for nothing).
    """

    pad_id = 0
    unk_id = 100
    cls_id = 101
    sep_id = 102
    mask_id = 103

    def __init__(self, vocab_file: str | os.PathLike, lowercase: bool = True) -> None:
        from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
        from tokenizers.models import WordPiece

        self.vocab_file = Path(vocab_file)
        vocab = self._read_vocab(self.vocab_file)
        self._vocab = vocab
        tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        specials = {name: vocab[name] for name in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")
                    if name in vocab}
        missing = {"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"} - specials.keys()
        if missing:
            raise ValueError(f"{self.vocab_file}: vocabulary lacks {sorted(missing)}")
        self.pad_id, self.unk_id = specials["[PAD]"], specials["[UNK]"]
        self.cls_id, self.sep_id, self.mask_id = specials["[CLS]"], specials["[SEP]"], specials["[MASK]"]
        # A literal "[MASK]" (or [CLS], ...) in the text is that one special token, as in
        # transformers' BertTokenizer, not five word pieces: users write "[MASK]" to probe the
        # MLM head. Matched case-sensitively and before normalisation ("[mask]" is split).
        tokenizer.add_special_tokens([AddedToken(name, normalized=False, special=True)
                                      for name in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")])
        tokenizer.post_processor = processors.BertProcessing(
            ("[SEP]", self.sep_id), ("[CLS]", self.cls_id)
        )
        tokenizer.decoder = decoders.WordPiece()
        self._tok = tokenizer
        self._truncation: int | None = None

    @staticmethod
    def _read_vocab(path: Path) -> dict[str, int]:
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        vocab: dict[str, int] = {}
        try:
            with open(path, encoding="utf-8") as handle:
                for index, line in enumerate(handle):
                    token = line.rstrip("\n")
                    if token in vocab:
                        raise ValueError(f"{path}:{index + 1}: duplicate token {token!r}")
                    vocab[token] = index
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err})") from None
        if not vocab:
            raise ValueError(f"{path}: empty vocabulary")
        return vocab

    @classmethod
    def from_vocab(cls, path: str | os.PathLike | None = None) -> "LxmertTokenizer":
        """From a `vocab.txt`, a directory holding one, or (None) the packaged BERT vocab."""
        if path is None:
            return cls(packaged_vocab_path())
        path = Path(path)
        if path.is_dir():
            candidate = path / VOCAB_NAME
            return cls(candidate if candidate.is_file() else packaged_vocab_path())
        return cls(path)

    from_pretrained = from_vocab

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def _set_truncation(self, max_length: int | None) -> None:
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
        if max_length != self._truncation:
            if max_length is None:
                self._tok.no_truncation()
            else:
                self._tok.enable_truncation(max_length=max_length)
            self._truncation = max_length

    def tokenize(self, text: str) -> list[str]:
        """Word pieces without special tokens."""
        self._set_truncation(None)
        return self._tok.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str, max_length: int | None = DEFAULT_MAX_LENGTH) -> list[int]:
        """`[CLS] pieces [SEP]`, truncated to `max_length` ids (pieces cut, [SEP] kept)."""
        self._set_truncation(max_length)
        return self._tok.encode(text.strip()).ids

    def encode_batch(self, texts: Sequence[str], max_length: int | None = DEFAULT_MAX_LENGTH) -> list[list[int]]:
        self._set_truncation(max_length)
        return [enc.ids for enc in self._tok.encode_batch([t.strip() for t in texts])]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self._tok.id_to_token(int(i)) or "[UNK]" for i in ids]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self._vocab.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(map(int, ids)), skip_special_tokens=skip_special_tokens)

    def pad(self, sequences: Sequence[Sequence[int]], pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """Right-pad id lists to the longest (or `pad_to`); returns the model's text inputs."""
        if not sequences:
            raise ValueError("cannot pad an empty batch")
        length = max(len(s) for s in sequences)
        if pad_to is not None:
            if pad_to < length:
                raise ValueError(f"pad_to={pad_to} is shorter than the longest sequence ({length})")
            length = pad_to
        input_ids = torch.full((len(sequences), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
        }

    def __call__(self, texts: str | Sequence[str], max_length: int | None = DEFAULT_MAX_LENGTH,
                 pad_to: int | None = None) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        return self.pad(self.encode_batch(texts, max_length), pad_to=pad_to)

    def to_json(self) -> str:
        """The tokenizer as a `tokenizers` JSON document (`tokenizer.json`), without the
        truncation length of the last call: what `transformers` and `tokenizers` load."""
        self._set_truncation(None)
        return self._tok.to_str(pretty=True)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        from lxmert.atomic import atomic_write_text

        target = Path(directory) / VOCAB_NAME
        ordered = sorted(self._vocab.items(), key=lambda kv: kv[1])
        atomic_write_text(target, "".join(tok + "\n" for tok, _ in ordered))
        return target


# ---------------------------------------------------------------------------------------
# Answers

_ANSWER_CONVERT = {
    "a man": "man", "the man": "man", "a woman": "woman", "the woman": "woman",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
    "grey": "gray",
}


def normalize_answer(answer: str) -> str:
    """The release's answer normalisation, used to match answers across vocabularies.

    Lower-case, strip a trailing '.', drop a leading article, map number words one..ten to
    digits and 'grey' to 'gray'. (This is NOT the official VQA evaluation normalisation,
    which lives in `lxmert.evaluation.vqa`.)
    """
    if not answer:
        return ""
    answer = answer.lower()
    if answer.endswith("."):
        answer = answer[:-1].strip()
    for article in ("a ", "an ", "the "):
        if answer.startswith(article):
            answer = answer[len(article):].strip()
    return _ANSWER_CONVERT.get(answer, answer)


_NAMED_TABLES = {
    "vqa": "vqa_trainval_label2ans.json",
    "gqa": "gqa_trainval_label2ans.json",
    "pretrain": "pretrain_all_ans.json",
}


class AnswerTable:
    """An ordered answer vocabulary: answer text <-> class index."""

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self._index: dict[str, int] = {}
        self._normalised: dict[str, int] = {}  # lookup()'s memo: raw answer -> index or -1
        for i, ans in enumerate(self.answers):
            if ans in self._index:
                raise ValueError(f"duplicate answer {ans!r} at {self._index[ans]} and {i}")
            self._index[ans] = i

    def __len__(self) -> int:
        return len(self.answers)

    def __contains__(self, answer: str) -> bool:
        return answer in self._index

    def __iter__(self):
        return iter(self.answers)

    def index(self, answer: str) -> int:
        try:
            return self._index[answer]
        except KeyError:
            raise KeyError(f"answer {answer!r} is not in the answer table ({len(self)} answers)") from None

    def get(self, answer: str, default: int | None = None) -> int | None:
        return self._index.get(answer, default)

    def lookup(self, answer: str) -> int:
        """Index of `answer` as given, else of its normalised form (`normalize_answer`),
        else -1. Memoised: datasets call it for every annotated answer of a corpus."""
        idx = self._index.get(answer)
        if idx is not None:
            return idx
        idx = self._normalised.get(answer)
        if idx is None:
            idx = self._normalised[answer] = self._index.get(normalize_answer(answer), -1)
        return idx

    def answer(self, index: int) -> str:
        return self.answers[index]

    @classmethod
    def from_name(cls, name: str) -> "AnswerTable":
        """The release's tables: 'vqa' (3129), 'gqa' (1842), 'pretrain' (9500)."""
        if name not in _NAMED_TABLES:
            raise KeyError(f"unknown answer table {name!r}; known: {sorted(_NAMED_TABLES)}")
        path = Path(str(resources.files("lxmert") / "resources" / "answers" / _NAMED_TABLES[name]))
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "AnswerTable":
        """Reads a label2ans list, an ans2label dict, or the release's all_ans.json list."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"answer table not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if isinstance(data, dict):
            if not all(isinstance(v, int) for v in data.values()):
                raise ValueError(f"{path}: an ans2label table must map answers to ints")
            ordered = sorted(data.items(), key=lambda kv: kv[1])
            if [v for _, v in ordered] != list(range(len(ordered))):
                raise ValueError(f"{path}: ans2label indices are not 0..{len(ordered) - 1}")
            return cls._named([k for k, _ in ordered], path)
        if isinstance(data, list):
            answers = []
            for i, item in enumerate(data):
                if isinstance(item, str):
                    answers.append(item)
                elif isinstance(item, dict) and isinstance(item.get("ans"), str):
                    answers.append(item["ans"])
                else:
                    raise ValueError(f"{path}: entry {i} is neither an answer string nor {{'ans': ...}}")
            return cls._named(answers, path)
        raise ValueError(f"{path}: expected a list or an object")

    @classmethod
    def _named(cls, answers: list[str], path: Path) -> "AnswerTable":
        try:
            return cls(answers)
        except ValueError as err:  # a repeated answer
            raise ValueError(f"{path}: {err}") from None

    def save(self, path: str | os.PathLike) -> None:
        from lxmert.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.answers, ensure_ascii=False, indent=0) + "\n")
