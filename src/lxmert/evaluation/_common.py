"""Small helpers shared by the metric modules: indexing annotations, matching ids."""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping, Sequence

Missing = Literal["error", "zero", "ignore"]
MISSING_CHOICES = ("error", "zero", "ignore")


def index_annotations(
    annotations: Mapping[Any, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    key: str,
    *,
    container_key: str | None = "annotations",
) -> dict[Any, Mapping[str, Any]]:
    """``{id: entry}`` from a list of entries (keyed by ``key``), from an already keyed
    mapping, or from an official file dict that holds the list under ``container_key``."""
    if isinstance(annotations, Mapping):
        inner = annotations.get(container_key) if container_key else None
        if isinstance(inner, list):
            annotations = inner
        else:
            return dict(annotations)
    out: dict[Any, Mapping[str, Any]] = {}
    for i, entry in enumerate(annotations):
        if not isinstance(entry, Mapping):
            raise TypeError(f"annotation #{i} must be a dict, got {type(entry).__name__}")
        if key not in entry:
            raise KeyError(f"annotation #{i} has no {key!r} key")
        if entry[key] in out:
            raise ValueError(f"annotation #{i}: duplicate {key} {entry[key]!r}")
        out[entry[key]] = entry
    return out


def match_ids(
    predictions: Mapping[Any, Any],
    gts: Mapping[Any, Any],
    missing: Missing,
    what: str,
) -> list[Any]:
    """The ids to evaluate, in annotation order.

    A prediction for an id absent from the annotations is always an error (it usually
    means the wrong split or an id type mismatch, e.g. "123" vs 123). Annotated ids
    without a prediction: ``"error"`` (what the official scripts require), ``"zero"``
    (kept, scored 0) or ``"ignore"`` (dropped).
    """
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing must be one of {MISSING_CHOICES}, got {missing!r}")
    unknown = [q for q in predictions if q not in gts]
    if unknown:
        hint = ""
        sample = unknown[0]
        if str(sample) in {str(k) for k in list(gts)[:1000]}:
            hint = " (the ids differ only in type: str vs int)"
        raise KeyError(f"{len(unknown)} predicted {what} ids are not in the annotations, "
                       f"e.g. {unknown[:3]!r}{hint}")
    absent = [q for q in gts if q not in predictions]
    if absent and missing == "error":
        raise ValueError(f"{len(absent)} annotated {what} ids have no prediction, "
                         f"e.g. {absent[:3]!r} (pass missing='zero' or missing='ignore')")
    if missing == "ignore":
        return [q for q in gts if q in predictions]
    return list(gts)


def mean(xs: Sequence[float]) -> float:
    """Plain mean; NaN for an empty sequence (an empty group has no accuracy)."""
    return float(sum(xs)) / len(xs) if len(xs) else float("nan")


def official_pct(xs: Sequence[float], ndigits: int = 2) -> float:
    """``round(100*float(sum(xs))/len(xs), n)``: the expression the official VQA-style
    scripts print."""
    return round(100 * float(sum(xs)) / len(xs), ndigits) if len(xs) else float("nan")
