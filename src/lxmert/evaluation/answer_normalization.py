"""The answer normalisation of the VQA-family evaluation scripts (``vqaEval.py``).

The VQA v2 script (GT-Vision-Lab/VQA) and the VizWiz script (the VizWiz API, itself a copy
of an early VQA script) share their punctuation step, number words and articles and
differ only in the contractions table, so one :class:`AnswerNormalizer` per table
serves both (the tables live in :mod:`.vqa` and :mod:`.vizwiz`). What is reproduced, quirks
included, behaviour for behaviour:

* :func:`clean_whitespace`: newlines and tabs become spaces, then ``str.strip()``;
* :func:`process_punctuation` (``processPunctuation``): each mark of :data:`PUNCTUATION`
  (the colon and the apostrophes are not in it) is *deleted* when the input has it next
  to a space or the input contains a comma between two digits, otherwise *replaced by a
  space*; the decision is taken on the original input, the replacement done on the running
  output. Then periods not followed by a digit are removed: the official pattern
  ``(?!<=\\d)(\\.)(?!\\d)`` means to be a look-behind but is a look-ahead for the
  characters ``<=d``, which never follow a period, so only the ``(?!\\d)`` part acts; and
  the call passes ``re.UNICODE`` where ``re.sub`` takes ``count``, so at most 32 periods go.
* :meth:`AnswerNormalizer.process_digit_article` (``processDigitArticle``): lower-case,
  split on whitespace, number words ``none``/``zero``..``ten`` to digits, drop ``a``/``an``/
  ``the``, then the contractions table word by word (its capitalised keys such as ``Im``
  can never match after lower-casing - as in the original), joined by single spaces.

String operations run with Python 3 semantics (``str.lower``, ``str.split``, ``\\d`` matching
any Unicode decimal digit), as the VQA evaluation server, the VQA repository's
``python3`` branch and the VizWiz API (Python 3 code) run them; docs/evaluation.md lists
the few inputs on which the Python 2 interpreter the VQA master file needs would differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

__all__ = [
    "ARTICLES",
    "MANUAL_MAP",
    "PUNCTUATION",
    "AnswerNormalizer",
    "clean_whitespace",
    "process_punctuation",
]

# Number words -> digits ("manualMap" of the official scripts).
MANUAL_MAP: Mapping[str, str] = MappingProxyType({
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
})

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# The official list, in its order (the order matters: each mark is decided on the
# original text but replaced in the running output).
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)

_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# The official call is ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in ``count``.
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)


@lru_cache(maxsize=1 << 17)
def clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, then strip: the first step the scripts apply to a
    prediction (and, in the VQA master script, to every ground-truth answer)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


@lru_cache(maxsize=1 << 17)
def process_punctuation(text: str) -> str:
    """Official ``processPunctuation`` (see the module docstring).

    Memoised: answers repeat a lot (a few thousand distinct strings cover a split), which
    makes a full VQA val evaluation several times faster than recomputing.
    """
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


class AnswerNormalizer:
    """``processDigitArticle`` and the full normalisation with one contractions table.

    ``contractions`` maps what annotators typed without the apostrophe to the restored
    form; VQA v2 and VizWiz ship different tables (:data:`lxmert.evaluation.vqa.CONTRACTIONS`,
    :data:`lxmert.evaluation.vizwiz.VIZWIZ_CONTRACTIONS`).
    """

    def __init__(self, name: str, contractions: Mapping[str, str]) -> None:
        self.name = name
        self.contractions: Mapping[str, str] = MappingProxyType(dict(contractions))
        # Per-instance caches: the table differs between instances.
        self.process_digit_article = lru_cache(maxsize=1 << 17)(self._digit_article)
        self.normalize = lru_cache(maxsize=1 << 17)(self._normalize)
        self.process_answer = lru_cache(maxsize=1 << 17)(self._process_answer)

    def __repr__(self) -> str:
        return f"AnswerNormalizer({self.name!r}, {len(self.contractions)} contractions)"

    def _digit_article(self, text: str) -> str:
        words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
        words = [w for w in words if w not in ARTICLES]
        return " ".join(self.contractions.get(w, w) for w in words)

    def _normalize(self, text: str) -> str:
        return self._process_answer(clean_whitespace(text))

    def _process_answer(self, text: str) -> str:
        # Punctuation then digits/articles/contractions, without the whitespace cleaning:
        # what the scripts apply to an answer that was already cleaned.
        return self.process_digit_article(process_punctuation(text))
