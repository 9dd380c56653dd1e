"""How much of a generated world's answers the question text alone gives away.

The world balances answers per question family so that text alone stays near chance;
`text_prior_baseline` measures it (docs/data.md has the figures).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

__all__ = ["text_prior_baseline"]


def text_prior_baseline(train: Sequence[dict], evaluate: Sequence[dict]) -> dict[str, float]:
    """Accuracy of text-only guessers on `evaluate` (VQA/GQA-style entries with `label`).

    `question`: the most frequent training answer for the identical question string
    (falling back to the question-type majority); `majority`: the overall most frequent
    training answer. Scores are the label score of the guess (VQA soft score, GQA 0/1).
    A balanced world keeps both far below what a model that looks at the image reaches.
    """
    def best(label: dict[str, float]) -> str:
        return max(label.items(), key=lambda kv: kv[1])[0] if label else ""

    def template(sent: str) -> str:
        return " ".join(sent.split()[:2])

    by_question: dict[str, Counter] = defaultdict(Counter)
    by_template: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for e in train:
        answer = best(e.get("label", {}))
        by_question[e["sent"]][answer] += 1
        by_template[template(e["sent"])][answer] += 1
        overall[answer] += 1
    if not overall or not evaluate:
        raise ValueError("text_prior_baseline needs non-empty train and evaluate entries")
    majority = overall.most_common(1)[0][0]
    score_q = score_m = 0.0
    for e in evaluate:
        label = e.get("label", {})
        counts = by_question.get(e["sent"]) or by_template.get(template(e["sent"])) or overall
        score_q += label.get(counts.most_common(1)[0][0], 0.0)
        score_m += label.get(majority, 0.0)
    n = len(evaluate)
    return {"question": score_q / n, "majority": score_m / n, "n": float(n)}
