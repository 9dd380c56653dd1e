"""NLVR2 evaluation: accuracy, consistency and per-phenomenon accuracy.

Follows ``nlvr2/eval/metrics.py`` of lil-lab/nlvr:

* a prediction is right when ``prediction.lower() == label.lower()``, the prediction being
  the text the script reads from the csv. Only ``true``/``false`` in any case can ever be
  right: ``"1"``, ``"0"``, ``" True"`` (with its space) or ``"yes"`` are scored wrong
  whatever the gold label. In memory, booleans and the head's class ids 0/1 stand for
  ``False``/``True`` (what :func:`~lxmert.evaluation.submissions.write_nlvr2_predictions`
  writes for them); strings are compared the official way, and a warning names the ones
  the official script can never score right. Reading a csv file that holds such values is
  an error naming the line (:func:`~lxmert.evaluation.submissions.read_nlvr2_predictions`).
* accuracy ("precision" in the script): right / number of labelled examples;
* consistency: share of (image set, sentence) groups whose every example is right. The
  script forms the group key by blanking the **third** dash-separated field of the
  identifier ``{split}-{set_id}-{pair_id}-{sentence_id}`` (``dev-850-2-0`` ->
  ``dev-850--0``). ``group_by="sent"`` groups by the sentence text instead (the paper's
  wording; it differs only when the same text was written for two image sets).
* per-phenomenon accuracy (``categories=``): the repository's
  ``util/annotated_dev_examples.txt`` lists 800 development sentences, each followed by
  ``* phenomenon`` lines; an example belongs to the phenomena of its sentence text.
  :func:`read_nlvr2_categories` reads that file. (The repository's
  ``eval/compute_category_accuracy.py`` that scores it was not available to this package's
  authors; the grouping here follows the README's description: accuracy over the
  examples of the annotated sentences, per phenomenon.)

Gold labels may be booleans, 0/1 (the release's json) or ``"True"``/``"False"`` (the raw
NLVR2 json lines).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .aggregate import mean
from .ids import Missing, index_annotations, match_ids

__all__ = [
    "evaluate_nlvr2",
    "official_prediction_text",
    "read_nlvr2_categories",
    "scorable",
    "sentence_key",
    "to_bool",
]

GroupBy = Literal["identifier", "sent"]
Extra = Literal["error", "ignore"]


def to_bool(value: Any, where: str = "value") -> bool:
    """A gold label (or a value to write) as a bool: ``True``/``False``, 1/0, or the
    strings "true"/"false"/"1"/"0" in any case and with surrounding spaces. Predictions
    are NOT parsed this leniently: see :func:`official_prediction_text`."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, float) and value in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1"):
            return True
        if v in ("false", "0"):
            return False
    raise ValueError(f"{where}: cannot read {value!r} as a True/False label")


def official_prediction_text(value: Any, where: str = "prediction") -> str:
    """The text the official script would compare for this prediction.

    A string is taken as it is (it is what a csv field holds); a bool, or a class id
    0/1 of the head, becomes ``"True"``/``"False"``, what the package's writer puts in
    the file for it.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return "True" if bool(value) else "False"
    raise TypeError(f"{where}: a prediction must be a string, a bool or a class id 0/1, "
                    f"got {value!r}")


def scorable(text: str) -> bool:
    """Whether the official script can ever count this prediction text right."""
    return text.lower() in ("true", "false")


def sentence_key(identifier: str) -> str:
    """The official consistency key: the identifier with its third field blanked."""
    parts = identifier.split("-")
    if len(parts) < 3:
        raise ValueError(f"NLVR2 identifier {identifier!r} does not look like "
                         "split-set-pair-sentence")
    parts[2] = ""
    return "-".join(parts)


def read_nlvr2_categories(path: str | os.PathLike) -> dict[str, list[str]]:
    """``{sentence: [phenomenon, ...]}`` from lil-lab/nlvr ``util/annotated_dev_examples.txt``:
    a sentence line followed by its ``* phenomenon`` lines; lines of at most one character
    after stripping are skipped. A phenomenon line before any sentence is an error naming
    the line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NLVR2 categories file not found: {p}")
    out: dict[str, list[str]] = {}
    sentence: str | None = None
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if len(s) <= 1:
                continue
            if s.startswith("*"):
                if sentence is None:
                    raise ValueError(f"{p}:{lineno}: phenomenon {s!r} before any sentence")
                cat = s[1:].strip()
                if cat and cat not in out[sentence]:
                    out[sentence].append(cat)
            else:
                sentence = s
                out.setdefault(sentence, [])
    if not out:
        raise ValueError(f"{p}: no annotated sentence")
    return out


def _sentence_text(ex: Mapping[str, Any]) -> str | None:
    for key in ("sentence", "sent"):
        if isinstance(ex.get(key), str):
            return ex[key]
    return None


def evaluate_nlvr2(
    predictions: Mapping[str, Any],
    annotations: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    group_by: GroupBy = "identifier",
    missing: Missing = "error",
    extra: Extra = "error",
    categories: Mapping[str, Sequence[str]] | str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Accuracy and consistency of ``predictions`` (``{identifier: prediction}``).

    ``annotations``: a list of examples with ``identifier``, ``label`` and (for
    ``group_by="sent"`` or ``categories``) ``sentence``/``sent``, or ``{identifier:
    example}``. ``extra="ignore"`` drops predictions of identifiers the annotations lack
    (what the official script does when nothing is missing - needed to score the
    repository's balanced/unbalanced subsets with full-split predictions).
    ``categories``: ``{sentence: [phenomenon]}`` or the path of
    ``annotated_dev_examples.txt``, for ``per_category`` accuracy.

    Returns fractions: ``accuracy``, ``consistency``, ``num_examples``,
    ``num_sentences``, ``per_example`` (1.0/0.0), ``num_unscorable`` (predictions that
    are neither true nor false), optionally ``per_category`` / ``category_counts``, and
    the official printout's numbers under ``"official"`` (``precision``, ``consistency``).
    """
    if group_by not in ("identifier", "sent"):
        raise ValueError(f"group_by must be 'identifier' or 'sent', got {group_by!r}")
    if extra not in ("error", "ignore"):
        raise ValueError(f"extra must be 'error' or 'ignore', got {extra!r}")
    gts = index_annotations(annotations, "identifier", container_key=None)
    if extra == "ignore":
        predictions = {k: v for k, v in predictions.items() if k in gts}
    ids = match_ids(predictions, gts, missing, "NLVR2 example")
    if not ids:
        raise ValueError("evaluate_nlvr2: nothing to evaluate")
    if categories is not None and not isinstance(categories, Mapping):
        categories = read_nlvr2_categories(categories)
    correct: list[float] = []
    per_example: dict[str, float] = {}
    unscorable: list[str] = []
    consistent: "OrderedDict[str, bool]" = OrderedDict()
    by_cat: dict[str, list[float]] = defaultdict(list)
    for ident in ids:
        ex = gts[ident]
        if "label" not in ex:
            raise KeyError(f"example {ident!r} has no 'label'")
        gold = "true" if to_bool(ex["label"], f"label of {ident!r}") else "false"
        ok = False
        if ident in predictions:
            text = official_prediction_text(predictions[ident], f"prediction for {ident!r}")
            if not scorable(text):
                unscorable.append(ident)
            ok = text.lower() == gold
        score = 1.0 if ok else 0.0
        correct.append(score)
        per_example[ident] = score
        if group_by == "identifier":
            key = sentence_key(str(ident))
        else:
            if _sentence_text(ex) is None:
                raise KeyError(f"example {ident!r} has no 'sentence'/'sent' (needed for "
                               "group_by='sent')")
            key = _sentence_text(ex)
        consistent[key] = consistent.get(key, True) and ok
        if categories is not None:
            sent = _sentence_text(ex)
            if sent is None:
                raise KeyError(f"example {ident!r} has no 'sentence'/'sent' (needed for "
                               "categories)")
            for cat in categories.get(sent.strip(), ()):
                by_cat[cat].append(score)
    if unscorable:
        warnings.warn(f"{len(unscorable)} NLVR2 predictions are neither 'True' nor 'False' "
                      f"(any case), e.g. {unscorable[:3]!r}: the official metrics.py scores them "
                      "wrong whatever the label", stacklevel=2)
    acc = mean(correct)
    cons = mean([float(v) for v in consistent.values()])
    out: dict[str, Any] = {
        "accuracy": acc,
        "consistency": cons,
        "num_examples": len(correct),
        "num_sentences": len(consistent),
        "num_unscorable": len(unscorable),
        "per_example": per_example,
    }
    if categories is not None:
        if not by_cat:
            raise ValueError("evaluate_nlvr2: no evaluated example has an annotated sentence "
                             "(categories are for the development split)")
        out["per_category"] = {k: mean(v) for k, v in sorted(by_cat.items())}
        out["category_counts"] = {k: len(v) for k, v in sorted(by_cat.items())}
    out["official"] = {"precision": acc, "consistency": cons}
    return out
