"""Averages and the official printouts' percentages, in each script's order of operations.

The scripts do not agree on how they turn a list of per-item scores into the printed
figure: the VQA-family scripts (VQA, VizWiz) print ``round(100 * sum / n, 2)``, while
GQA's ``eval.py`` and A-OKVQA's ``eval_predictions.py`` compute ``sum / n * 100`` (GQA
then formats it with two decimals, A-OKVQA prints it unrounded). In floating point the
two orders can differ in the last bit, which can move a printed figure that sits on a
rounding boundary; each benchmark module therefore calls the helper of its own script.
"""

from __future__ import annotations

from collections.abc import Sequence


def mean(xs: Sequence[float]) -> float:
    """``sum / n``; NaN for an empty sequence (an empty group has no accuracy)."""
    return float(sum(xs)) / len(xs) if len(xs) else float("nan")


def rounded_percent(xs: Sequence[float], ndigits: int = 2) -> float:
    """``round(100*float(sum(xs))/len(xs), ndigits)``: what the VQA and VizWiz scripts
    print (Python 3 rounding)."""
    return round(100 * float(sum(xs)) / len(xs), ndigits) if len(xs) else float("nan")


def percent_of_mean(xs: Sequence[float]) -> float:
    """``float(sum(xs)) / len(xs) * 100``: the unrounded figure of GQA's and A-OKVQA's
    scripts."""
    return float(sum(xs)) / len(xs) * 100 if len(xs) else float("nan")
