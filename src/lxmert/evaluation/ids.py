"""Which ids an evaluation scores: annotations indexed by id, predictions matched to them.

Every benchmark module goes through :func:`match_ids`, so the rules are the same
everywhere: a prediction for an id the annotations do not have is always an error (it
usually means the wrong split or an id type mismatch, "123" vs 123), and what happens to
annotated ids without a prediction is the caller's explicit choice (``missing``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

__all__ = ["Missing", "MISSING_CHOICES", "index_annotations", "require_unique_ids", "unknown_ids_error", "match_ids"]

Missing = Literal["error", "zero", "ignore"]
MISSING_CHOICES = ("error", "zero", "ignore")


def index_annotations(
    annotations: Mapping[Any, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    key: str,
    *,
    container_key: str | None = "annotations",
) -> dict[Any, Mapping[str, Any]]:
    """``{id: entry}`` from a list of entries (keyed by ``key``), from an already keyed
    mapping, or from an official file dict that holds the list under ``container_key``.
    A repeated id is an error naming the entry (the official readers would silently keep
    the last one)."""
    if isinstance(annotations, Mapping):
        inner = annotations.get(container_key) if container_key else None
        if isinstance(inner, list):
            annotations = inner
        else:
            return dict(annotations)
    out: dict[Any, Mapping[str, Any]] = {}
    for i, entry in enumerate(annotations):
        if type(entry) is not dict and not isinstance(entry, Mapping):
            raise TypeError(f"annotation #{i} must be a dict, got {type(entry).__name__}")
        if key not in entry:
            raise KeyError(f"annotation #{i} has no {key!r} key")
        if entry[key] in out:
            raise ValueError(f"annotation #{i}: duplicate {key} {entry[key]!r}")
        out[entry[key]] = entry
    return out


def require_unique_ids(ids: Iterable[Any], what: str, source: str) -> None:
    """ValueError naming ``source``, the entry and the id of the first repeated id: scores
    are keyed by id, so a repeat would silently replace one question by another (30
    entries of one id counted as 1 question)."""
    first: dict[Any, int] = {}
    for i, ident in enumerate(ids):
        if ident in first:
            raise ValueError(f"{source}: entry #{i} repeats {what} {ident!r} (first at entry #{first[ident]})")
        first[ident] = i


def unknown_ids_error(unknown: list[Any], gts: Mapping[Any, Any], what: str,
                      source: str = "annotations") -> KeyError:
    """The error for predictions of ids the annotations (``source``) lack, with a hint
    when the ids differ only in type (str vs int)."""
    hint = ""
    if str(unknown[0]) in {str(k) for k in list(gts)[:1000]}:
        hint = " (the ids differ only in type: str vs int)"
    return KeyError(f"{len(unknown)} predicted {what} ids are not in the {source}, "
                    f"e.g. {unknown[:3]!r}{hint}")


def match_ids(
    predictions: Mapping[Any, Any],
    gts: Mapping[Any, Any],
    missing: Missing,
    what: str,
    *,
    required: Iterable[Any] | None = None,
) -> list[Any]:
    """The ids to evaluate, in annotation order.

    Annotated ids without a prediction: ``"error"`` (what the official scripts require),
    ``"zero"`` (kept, scored 0) or ``"ignore"`` (dropped). ``required``: the ids that
    need a prediction under ``"error"`` when that is not every annotated id (GQA asks
    only for its balanced questions).
    """
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing must be one of {MISSING_CHOICES}, got {missing!r}")
    unknown = [q for q in predictions if q not in gts]
    if unknown:
        raise unknown_ids_error(unknown, gts, what)
    need = gts if required is None else required
    absent = [q for q in need if q not in predictions]
    if absent and missing == "error":
        raise ValueError(f"{len(absent)} annotated {what} ids have no prediction, "
                         f"e.g. {absent[:3]!r} (pass missing='zero' or missing='ignore')")
    if missing == "ignore":
        return [q for q in gts if q in predictions]
    return list(gts)
