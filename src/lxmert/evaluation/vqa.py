"""The official VQA v2 evaluation, the release's training targets and its quick metric.

What this module follows, and where it deliberately keeps the official quirks:

* :func:`process_punctuation`, :func:`process_digit_article`, :data:`CONTRACTIONS`,
  :data:`MANUAL_MAP`, :data:`ARTICLES`, :data:`PUNCTUATION` reproduce
  ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of the official VQA API
  (GT-Vision-Lab/VQA, master), character for character in behaviour:

  - a punctuation mark is *deleted* when it touches a space in the input or the input
    contains a comma between two digits ("1,000" -> "1000"), otherwise it becomes a space
    ("black/white" -> "black white");
  - a period not followed by a digit is deleted ("2.5" keeps its period); the official
    pattern ``(?!<=\\d)(\\.)(?!\\d)`` is a (buggy) look-ahead, kept as is, and the official
    call passes ``re.UNICODE`` where ``count`` goes, so at most 32 periods are removed;
  - words are lower-cased, number words "none"/"zero".."ten" become digits, the articles
    a/an/the are dropped, then the contractions table is applied (its keys with capitals,
    such as "Im", can never match after lower-casing - as in the official script).

* :func:`vqa_accuracy` / :func:`evaluate_vqa`: the prediction is normalised with both
  steps; the ten ground-truth answers get only the punctuation step and only when they
  disagree (``len(set(answers)) > 1``), exactly as the official script does (the released
  annotations are already normalised). Accuracy of a question = mean over the ten
  leave-one-out subsets of ``min(1, #matches among the other nine / 3)``; overall, per
  answer type and per question type are means of these per-question values. The official
  report (percent, rounded to 2 decimals) is returned under ``"official"``.

* :func:`vqa_soft_score` / :func:`soft_scores`: the bottom-up-attention preprocessing that
  the LXMERT release reused for training targets: an answer given by 0/1/2/3/>=4 of the
  ten annotators scores 0/0.3/0.6/0.9/1.0. These values equal the official leave-one-out
  accuracy of that answer (for m matching annotators, ``(m*min(1,(m-1)/3) +
  (10-m)*min(1,m/3))/10``), which is why the release's quick metric tracks the official one.

* :func:`label_score`: the release's ``VQAEvaluator.evaluate`` used during fine-tuning -
  the sum over questions of the soft label score of the predicted answer, divided by the
  number of predictions.
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping, Sequence

from ._common import Missing, index_annotations, match_ids, mean, official_pct

__all__ = [
    "ARTICLES",
    "CONTRACTIONS",
    "MANUAL_MAP",
    "PUNCTUATION",
    "evaluate_vqa",
    "label_score",
    "leave_one_out_accuracy",
    "normalize_answer",
    "process_digit_article",
    "process_punctuation",
    "soft_scores",
    "vqa_accuracy",
    "vqa_soft_score",
]


# The official contractions table (vqaEval.py). Keys are what annotators typed without the
# apostrophe; values restore it. Kept complete and in the official spelling, including the
# odd entries ("somebody'd" -> "somebodyd") and the capitalised keys that never match.
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

# Number words -> digits ("manualMap" of the official script).
MANUAL_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# The official list, in its order (the order matters: each mark is decided on the
# *original* text but replaced in the running output).
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)

_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# vqaEval.py calls ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in ``count``.
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)


@lru_cache(maxsize=1 << 16)
def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: delete or space out punctuation, strip periods.

    Memoised: answers repeat a lot (a few thousand distinct strings cover a split), which
    makes a full VQA val evaluation several times faster than recomputing.

    A mark is deleted when the input has it next to a space or the input has a comma
    between digits; otherwise it is replaced by a space. Periods not followed by a digit
    are removed (at most 32, as the official call does).
    """
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lower-case, number words -> digits, drop
    articles, restore contractions, join with single spaces."""
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


@lru_cache(maxsize=1 << 16)
def normalize_answer(answer: str) -> str:
    """The full normalisation the official script applies to a *predicted* answer:
    newlines/tabs -> spaces, strip, :func:`process_punctuation`, :func:`process_digit_article`."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def leave_one_out_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Mean over the leave-one-out subsets of ``min(1, #matches in the subset / 3)``.

    Strings are compared as given (no normalisation here). With ten answers of which
    ``m`` match: m=1 -> 0.3, m=2 -> 0.6, m=3 -> 0.9, m>=4 -> 1.0.
    """
    n = len(answers)
    if n == 0:
        raise ValueError("leave_one_out_accuracy: no ground-truth answers")
    matches = sum(1 for a in answers if a == prediction)
    total = 0.0
    for a in answers:
        others = matches - (1 if a == prediction else 0)
        total += min(1.0, others / 3.0)
    return total / n


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official per-question VQA accuracy of ``prediction`` against the annotators' answers.

    The prediction is fully normalised (:func:`normalize_answer`); the ground-truth answers
    only get :func:`process_punctuation`, and only when they are not all identical - the
    official behaviour (annotations are shipped normalised already).
    """
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a string, got {type(prediction).__name__}")
    pred = normalize_answer(prediction)
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    return leave_one_out_accuracy(pred, gts)


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
    already); ``normalize=True`` applies :func:`normalize_answer` first. With
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
        counts[normalize_answer(a) if normalize else a] += 1
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


def _gt_answers(entry: Mapping[str, Any], where: str) -> list[str]:
    if "answers" not in entry:
        raise KeyError(f"{where}: no 'answers' (the ten annotator answers are needed for the "
                       "official accuracy; use label_score for soft-label files)")
    out = []
    for j, a in enumerate(entry["answers"]):
        # Exact-type fast paths first: ABC isinstance checks dominate on 2M answers.
        if type(a) is not str:
            if type(a) is dict or isinstance(a, Mapping):
                if "answer" not in a:
                    raise KeyError(f"{where}: answers[{j}] has no 'answer' key")
                a = a["answer"]
            if not isinstance(a, str):
                raise TypeError(f"{where}: answers[{j}] must be a string, got {type(a).__name__}")
        out.append(a)
    if not out:
        raise ValueError(f"{where}: empty 'answers'")
    return out


def evaluate_vqa(
    predictions: Mapping[Any, str],
    annotations: Mapping[Any, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    missing: Missing = "error",
    ndigits: int = 2,
) -> dict[str, Any]:
    """Official VQA v2 accuracy of ``predictions`` (``{question_id: answer}``).

    ``annotations``: the official annotation file's dict or its ``"annotations"`` list, or
    ``{question_id: entry}``; each entry needs ``answers`` (ten strings or official answer
    dicts) and may carry ``answer_type`` and ``question_type``. ``missing``: what to do
    with annotated questions without a prediction - ``"error"`` (official), ``"zero"``
    (score 0) or ``"ignore"`` (evaluate the predicted ones only).

    Returns fractions in [0, 1] (``accuracy``, ``per_answer_type``, ``per_question_type``,
    ``per_question``, ``num_questions``) and the official report in percent rounded to
    ``ndigits`` under ``"official"`` (``overall``, ``perAnswerType``, ``perQuestionType``).
    """
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
            acc = vqa_accuracy(predictions[qid], _gt_answers(entry, f"question_id {qid!r}"))
        else:
            acc = 0.0
        per_q[qid] = acc
        if "answer_type" in entry:
            by_ans[entry["answer_type"]].append(acc)
        if "question_type" in entry:
            by_ques[entry["question_type"]].append(acc)
    overall = mean(list(per_q.values()))
    per_ans = {k: mean(v) for k, v in by_ans.items()}
    per_ques = {k: mean(v) for k, v in by_ques.items()}
    return {
        "accuracy": overall,
        "per_answer_type": per_ans,
        "per_question_type": per_ques,
        "per_question": per_q,
        "num_questions": len(per_q),
        "official": {
            "overall": official_pct(list(per_q.values()), ndigits),
            "perAnswerType": {k: official_pct(v, ndigits) for k, v in by_ans.items()},
            "perQuestionType": {k: official_pct(v, ndigits) for k, v in by_ques.items()},
        },
    }
