"""NLVR2 evaluation: accuracy and consistency.

Follows the official ``nlvr2/eval/metrics.py`` of lil-lab/nlvr:

* accuracy ("precision" in the script): share of examples whose predicted label equals
  the gold label (``"True"``/``"False"``, compared case-insensitively);
* consistency: share of distinct sentences for which *every* image pair carrying that
  sentence is predicted right. The official script identifies a sentence by the example
  ``identifier`` with its **third** dash-separated field blanked: identifiers are
  ``{split}-{set_id}-{pair_id}-{sentence_id}`` (e.g. ``dev-850-2-0``), so blanking
  ``pair_id`` gives ``dev-850--0``, one key per (image set, sentence). Dropping the last
  ``-N`` instead would group by image pair, which is not what the leaderboard reports.
  ``group_by="sent"`` groups by the sentence text instead (the definition in the paper's
  wording; it differs only when the same text was written for two image sets).

Labels and predictions may be booleans, 0/1 (the release's json) or the strings
"True"/"False" (the raw NLVR2 json and the leaderboard csv).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Literal, Mapping

from ._common import Missing, index_annotations, match_ids, mean

__all__ = ["evaluate_nlvr2", "sentence_key", "to_bool"]

GroupBy = Literal["identifier", "sent"]


def to_bool(value: Any, where: str = "value") -> bool:
    """``True``/``False``, 1/0 or "true"/"false"/"1"/"0" (any case) -> bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
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


def sentence_key(identifier: str) -> str:
    """The official consistency key: the identifier with its third field blanked."""
    parts = identifier.split("-")
    if len(parts) < 3:
        raise ValueError(f"NLVR2 identifier {identifier!r} does not look like "
                         "split-set-pair-sentence")
    parts[2] = ""
    return "-".join(parts)


def evaluate_nlvr2(
    predictions: Mapping[str, Any],
    annotations: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    group_by: GroupBy = "identifier",
    missing: Missing = "error",
) -> dict[str, Any]:
    """Accuracy and consistency of ``predictions`` (``{identifier: label}``).

    ``annotations``: a list of examples with ``identifier``, ``label`` and (for
    ``group_by="sent"``) ``sent``, or ``{identifier: example}``. Returns fractions:
    ``accuracy``, ``consistency``, ``num_examples``, ``num_sentences``, and the official
    printout's numbers under ``"official"`` (``precision``, ``consistency``).
    """
    if group_by not in ("identifier", "sent"):
        raise ValueError(f"group_by must be 'identifier' or 'sent', got {group_by!r}")
    gts = index_annotations(annotations, "identifier", container_key=None)
    ids = match_ids(predictions, gts, missing, "NLVR2 example")
    if not ids:
        raise ValueError("evaluate_nlvr2: nothing to evaluate")
    correct: list[float] = []
    consistent: "OrderedDict[str, bool]" = OrderedDict()
    for ident in ids:
        ex = gts[ident]
        if "label" not in ex:
            raise KeyError(f"example {ident!r} has no 'label'")
        gold = to_bool(ex["label"], f"label of {ident!r}")
        ok = (ident in predictions
              and to_bool(predictions[ident], f"prediction for {ident!r}") == gold)
        correct.append(float(ok))
        if group_by == "identifier":
            key = sentence_key(str(ident))
        else:
            if "sent" not in ex:
                raise KeyError(f"example {ident!r} has no 'sent' (needed for group_by='sent')")
            key = ex["sent"]
        consistent[key] = consistent.get(key, True) and ok
    acc = mean(correct)
    cons = mean([float(v) for v in consistent.values()])
    return {
        "accuracy": acc,
        "consistency": cons,
        "num_examples": len(correct),
        "num_sentences": len(consistent),
        "official": {"precision": acc, "consistency": cons},
    }
