"""The official VQA v2 evaluation (both eras), the release's training targets and quick metric.

Accuracy follows ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of the official VQA API
(GT-Vision-Lab/VQA). Two versions of its per-question rules exist, selected by ``rules``:

* ``"master"`` (default) - the repository's master since the 2021 commit "Fixed processing
  answers bug" (a013f00): newlines/tabs -> spaces and ``strip()`` on the prediction and on
  every ground-truth answer; then, ONLY when the (cleaned) ten answers are not all
  identical, the full normalisation (punctuation, then number words / articles /
  contractions) on each ground-truth answer AND on the prediction. When they are all
  identical nothing else happens: ``"No"`` against ten ``"no"`` scores 0.
* ``"legacy"`` - the rules before that commit (still those of the repository's
  ``python3`` branch, c4e6a0e): the prediction is always cleaned and fully normalised; the
  ground-truth answers are not cleaned, and only when they are not all identical they get
  the punctuation step (never the digits/articles step). Numbers published before 2021,
  the LXMERT release's among them, were computed with these rules.

Then, in both: accuracy of a question = mean over the annotators of
``min(1, #other annotators whose answer equals the prediction / 3)``. "Other" is decided
the official way, by comparing whole answer records (``item != gtAnsDatum``): the official
annotation files give every answer a distinct ``answer_id``, so this is leave-one-out; two
identical records (possible only in hand-made files without ``answer_id``) exclude each
other. Plain-string answers count as distinct annotators. Overall, per answer type and per
question type are means of the per-question values (question order as in the annotations);
the official printout ``round(100*sum/n, 2)`` is returned under ``"official"``.

The normalisation steps are in :mod:`lxmert.evaluation.answer_normalization`;
:func:`normalize_vqa_answer` is the full one (what the script applies to a prediction). It
is NOT :func:`lxmert.text.normalize_answer`, the release's matching of answers to the
answer table.

Also here, because they are the same numbers: :func:`vqa_soft_score` / :func:`soft_scores`,
the bottom-up-attention preprocessing the LXMERT release reused for training targets
(0/1/2/3/>=4 of ten annotators -> 0/0.3/0.6/0.9/1.0, the official accuracy of that answer),
and :func:`label_score`, the release's quick metric (``VQAEvaluator.evaluate``: the sum of
the predicted answers' soft labels over the number of predictions).
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from .aggregate import mean, rounded_percent
from .answer_normalization import (
    ARTICLES,
    MANUAL_MAP,
    PUNCTUATION,
    AnswerNormalizer,
    clean_whitespace,
    process_punctuation,
)
from .ids import Missing, index_annotations, match_ids

__all__ = [
    "ARTICLES",
    "CONTRACTIONS",
    "MANUAL_MAP",
    "PUNCTUATION",
    "VQA_NORMALIZER",
    "VQA_RULES",
    "evaluate_vqa",
    "label_score",
    "leave_one_out_accuracy",
    "normalize_vqa_answer",
    "process_digit_article",
    "process_punctuation",
    "soft_scores",
    "vqa_accuracy",
    "vqa_soft_score",
]

Rules = Literal["master", "legacy"]
VQA_RULES: tuple[str, ...] = ("master", "legacy")


# The contractions table of the VQA master script. Keys are what annotators typed without
# the apostrophe; values restore it. Kept complete and in the official spelling, including
# the odd entries ("somebody'd" -> "somebodyd") and the capitalised keys that never match.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

VQA_NORMALIZER = AnswerNormalizer("vqa", CONTRACTIONS)

#: Official ``processDigitArticle`` with the VQA table (memoised).
process_digit_article = VQA_NORMALIZER.process_digit_article


def normalize_vqa_answer(answer: str) -> str:
    """The full normalisation of the official VQA script: newlines/tabs -> spaces, strip,
    :func:`process_punctuation`, :func:`process_digit_article` (``"  The two\\tDogs."`` ->
    ``"2 dogs"``)."""
    return VQA_NORMALIZER.normalize(answer)


def _check_rules(rules: str) -> None:
    if rules not in VQA_RULES:
        raise ValueError(f"VQA rules must be one of {VQA_RULES}, got {rules!r}")


def leave_one_out_accuracy(
    prediction: str,
    answers: Sequence[str],
    records: Sequence[Any] | None = None,
) -> float:
    """Mean over the annotators of ``min(1, #matching *other* annotators / 3)``.

    Strings are compared as given (no normalisation here). ``records``: one per answer,
    what the official script compares to decide which annotators are "other" (the answer
    dicts without their ``answer``); ``None`` makes every answer a distinct annotator.
    With ten distinct annotators of which ``m`` match: m=1 -> 0.3, 2 -> 0.6, 3 -> 0.9,
    >=4 -> 1.0.
    """
    n = len(answers)
    if n == 0:
        raise ValueError("leave_one_out_accuracy: no ground-truth answers")
    if records is not None and len(records) != n:
        raise ValueError(f"{n} answers but {len(records)} records")
    hit = [a == prediction for a in answers]
    matches = sum(hit)
    total = 0.0
    if records is None:
        # Two possible terms; added in annotator order like the official loop, so the sum
        # is bit-identical.
        on_hit, on_miss = min(1.0, (matches - 1) / 3.0), min(1.0, matches / 3.0)
        for h in hit:
            total += on_hit if h else on_miss
        return total / n
    for i in range(n):
        others = matches
        if hit[i]:
            # The official ``item != gtAnsDatum`` drops every record equal to this one
            # (itself included); equal records have equal answers, so only hits count.
            others -= sum(1 for j in range(n) if hit[j] and records[j] == records[i])
        total += min(1.0, others / 3.0)
    return total / n


def _per_question(prediction: str, answers: Sequence[str], records: Sequence[Any] | None,
                  rules: str) -> float:
    if rules == "master":
        res = clean_whitespace(prediction)
        gts = list(map(clean_whitespace, answers))
        if len(set(gts)) > 1:
            gts = list(map(VQA_NORMALIZER.process_answer, gts))
            res = VQA_NORMALIZER.process_answer(res)
    else:
        res = normalize_vqa_answer(prediction)
        gts = list(answers)
        if len(set(gts)) > 1:
            gts = list(map(process_punctuation, gts))
    return leave_one_out_accuracy(res, gts, records)


def vqa_accuracy(
    prediction: str,
    answers: Sequence[str | Mapping[str, Any]],
    *,
    rules: Rules = "master",
) -> float:
    """Official per-question VQA accuracy of ``prediction`` against the annotators' answers
    (strings, or the official answer dicts) under ``rules`` (see the module docstring)."""
    _check_rules(rules)
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a string, got {type(prediction).__name__}")
    texts, records = _gt_answers({"answers": answers}, "answers")
    return _per_question(prediction, texts, records, rules)


def vqa_soft_score(count: int) -> float:
    """Training-target score of an answer given by ``count`` of the ten annotators:
    0/1/2/3/>=4 -> 0/0.3/0.6/0.9/1.0 (bottom-up-attention ``get_score``, reused by the
    LXMERT release)."""
    if count < 0:
        raise ValueError(f"annotator count must be >= 0, got {count}")
    if count >= 4:
        return 1.0
    return (0.0, 0.3, 0.6, 0.9)[count]


def soft_scores(
    answers: Iterable[str | Mapping[str, Any]],
    *,
    normalize: bool = False,
    vocabulary: Mapping[str, Any] | Iterable[str] | None = None,
) -> dict[str, float]:
    """Soft target scores ``{answer: score}`` from one question's annotator answers.

    ``answers`` are strings or official answer dicts (``{"answer": ...}``). Answers are
    counted as given, as the preprocessing script does (VQA annotations are normalised
    already); ``normalize=True`` applies :func:`normalize_vqa_answer` first. With
    ``vocabulary`` (an answer table or any container of answers) answers outside it are
    dropped, as the release's targets only cover the answer head's vocabulary.
    """
    counts: Counter[str] = Counter()
    for i, a in enumerate(answers):
        if isinstance(a, Mapping):
            if "answer" not in a:
                raise KeyError(f"answer #{i} has no 'answer' key: {dict(a)!r}")
            a = a["answer"]
        if not isinstance(a, str):
            raise TypeError(f"answer #{i} must be a string, got {type(a).__name__}")
        counts[normalize_vqa_answer(a) if normalize else a] += 1
    vocab = None if vocabulary is None else (
        vocabulary if isinstance(vocabulary, Mapping) else set(vocabulary))
    return {
        a: vqa_soft_score(c)
        for a, c in counts.items()
        if vocab is None or a in vocab
    }


def label_score(
    predictions: Mapping[Any, str],
    labels: Mapping[Any, Mapping[str, float]],
) -> float:
    """The release's quick metric: ``sum(label[qid].get(pred, 0)) / len(predictions)``.

    ``labels`` maps question ids to soft-score dicts (the ``label`` field of the release's
    json files). A prediction for a question without labels raises ``KeyError``.
    """
    if not predictions:
        raise ValueError("label_score: no predictions")
    total = 0.0
    for qid, ans in predictions.items():
        if qid not in labels:
            raise KeyError(f"no label for predicted question id {qid!r}")
        total += float(labels[qid].get(ans, 0.0))
    return total / len(predictions)


_ANSWER = operator.itemgetter("answer")
_ANSWER_ID = itertools.repeat("answer_id")


def _distinct(values: list[Any]) -> bool:
    try:
        return len(set(values)) == len(values)
    except TypeError:           # unhashable ids: compare their reprs
        return len(set(map(repr, values))) == len(values)


def _careful_gt_answers(answers: Iterable[Any], where: str
                        ) -> tuple[list[str], list[Any], list[Mapping[str, Any] | None]]:
    """The answers one by one, with an error naming the first bad one."""
    texts: list[str] = []
    answer_ids: list[Any] = []
    dicts: list[Mapping[str, Any] | None] = []
    for j, a in enumerate(answers):
        if isinstance(a, str):
            texts.append(a)
            dicts.append(None)
            continue
        if not isinstance(a, Mapping):
            raise TypeError(f"{where}: answers[{j}] must be a string or an answer dict, "
                            f"got {type(a).__name__}")
        if "answer" not in a:
            raise KeyError(f"{where}: answers[{j}] has no 'answer' key")
        text = a["answer"]
        if not isinstance(text, str):
            raise TypeError(f"{where}: answers[{j}]['answer'] must be a string, "
                            f"got {type(text).__name__}")
        texts.append(text)
        dicts.append(a)
        answer_ids.append(a.get("answer_id"))
    return texts, answer_ids, dicts


def _gt_answers(entry: Mapping[str, Any], where: str) -> tuple[list[str], list[Any] | None]:
    """The answer strings and, for answer dicts, the records the official script compares
    to tell annotators apart (the dict without its ``answer``)."""
    if "answers" not in entry:
        raise KeyError(f"{where}: no 'answers' (the ten annotator answers are needed for the "
                       "official accuracy; use label_score for soft-label files)")
    answers = entry["answers"]
    try:    # fast path: the official files' answer dicts (2M of them in VQA v2 val)
        texts = list(map(_ANSWER, answers))
        answer_ids = list(map(dict.get, answers, _ANSWER_ID))
        dicts: list[Mapping[str, Any] | None] = list(answers)
        fast = set(map(type, texts)) == {str}
    except (TypeError, KeyError):
        fast = False
    if not fast:
        texts, answer_ids, dicts = _careful_gt_answers(answers, where)
    if not texts:
        raise ValueError(f"{where}: empty 'answers'")
    if not answer_ids:
        return texts, None              # plain strings: each is its own annotator
    if len(answer_ids) == len(texts) and None not in answer_ids and _distinct(answer_ids):
        return texts, None              # distinct answer_ids (official files): leave-one-out
    records: list[Any] = [
        ("annotator", j) if d is None else {k: v for k, v in d.items() if k != "answer"}
        for j, d in enumerate(dicts)
    ]
    return texts, records


def evaluate_vqa(
    predictions: Mapping[Any, str],
    annotations: Mapping[Any, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    rules: Rules = "master",
    missing: Missing = "error",
    ndigits: int = 2,
) -> dict[str, Any]:
    """Official VQA v2 accuracy of ``predictions`` (``{question_id: answer}``).

    ``annotations``: the official annotation file's dict or its ``"annotations"`` list, or
    ``{question_id: entry}``; each entry needs ``answers`` (ten strings or official answer
    dicts) and may carry ``answer_type`` and ``question_type``. ``rules``: ``"master"``
    (the official script today) or ``"legacy"`` (before 2021; see the module docstring).
    ``missing``: what to do with annotated questions without a prediction - ``"error"``
    (official), ``"zero"`` (score 0) or ``"ignore"`` (evaluate the predicted ones only).

    Returns fractions in [0, 1] (``accuracy``, ``per_answer_type``, ``per_question_type``,
    ``per_question``, ``num_questions``), ``rules``, and the official report in percent
    rounded to ``ndigits`` under ``"official"`` (``overall``, ``perAnswerType``,
    ``perQuestionType``).
    """
    _check_rules(rules)
    gts = index_annotations(annotations, "question_id")
    qids = match_ids(predictions, gts, missing, "question")
    if not qids:
        raise ValueError("evaluate_vqa: nothing to evaluate")
    per_q: dict[Any, float] = {}
    by_ans: dict[str, list[float]] = defaultdict(list)
    by_ques: dict[str, list[float]] = defaultdict(list)
    for qid in qids:
        entry = gts[qid]
        if qid in predictions:
            pred = predictions[qid]
            if not isinstance(pred, str):
                raise TypeError(f"prediction for question_id {qid!r} must be a string, "
                                f"got {type(pred).__name__}")
            texts, records = _gt_answers(entry, f"question_id {qid!r}")
            acc = _per_question(pred, texts, records, rules)
        else:
            acc = 0.0
        per_q[qid] = acc
        if "answer_type" in entry:
            by_ans[entry["answer_type"]].append(acc)
        if "question_type" in entry:
            by_ques[entry["question_type"]].append(acc)
    accs = list(per_q.values())
    return {
        "accuracy": mean(accs),
        "per_answer_type": {k: mean(v) for k, v in by_ans.items()},
        "per_question_type": {k: mean(v) for k, v in by_ques.items()},
        "per_question": per_q,
        "num_questions": len(per_q),
        "rules": rules,
        "official": {
            "overall": rounded_percent(accs, ndigits),
            "perAnswerType": {k: rounded_percent(v, ndigits) for k, v in by_ans.items()},
            "perQuestionType": {k: rounded_percent(v, ndigits) for k, v in by_ques.items()},
        },
    }
