"""VizWiz: every per-question score, every printed figure and the answerability AP/F1 equal
the official VizWiz API's.

``OfficialVizWizEval`` is a loop-for-loop transcription, written for this test, of the
VizWiz API's ``vqaEval.py`` (Qing Li; linked from vizwiz.org/tasks-and-datasets/vqa), with
its own literal copy of the VizWiz contractions table (typographic apostrophes ’ in almost
every entry); ``sk_average_precision`` / ``sk_f1`` transcribe the scikit-learn functions
that script calls (``average_precision_score``: ``_binary_clf_curve`` +
``precision_recall_curve``; ``f1_score``).
"""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from lxmert.evaluation import score, evaluate_vizwiz, write_vizwiz_submission
from lxmert.evaluation.vizwiz import VIZWIZ_CONTRACTIONS, normalize_vizwiz_answer
from lxmert.evaluation.vqa import normalize_vqa_answer

Q = "\u2019"  # the typographic apostrophe of the VizWiz table

OFFICIAL_VIZWIZ_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": f"couldn{Q}t{Q}ve", f"couldnt{Q}ve": f"couldn{Q}t{Q}ve", "didnt": f"didn{Q}t",
    "doesnt": f"doesn{Q}t", "dont": f"don{Q}t", "hadnt": f"hadn{Q}t", f"hadnt{Q}ve": f"hadn{Q}t{Q}ve",
    "hadn'tve": f"hadn{Q}t{Q}ve", "hasnt": f"hasn{Q}t", "havent": f"haven{Q}t", "hed": f"he{Q}d",
    f"hed{Q}ve": f"he{Q}d{Q}ve", f"he{Q}dve": f"he{Q}d{Q}ve", "hes": f"he{Q}s", "howd": f"how{Q}d",
    "howll": f"how{Q}ll", "hows": f"how{Q}s", f"Id{Q}ve": f"I{Q}d{Q}ve", f"I{Q}dve": f"I{Q}d{Q}ve",
    "Im": f"I{Q}m", "Ive": f"I{Q}ve", "isnt": f"isn{Q}t", "itd": f"it{Q}d", f"itd{Q}ve": f"it{Q}d{Q}ve",
    f"it{Q}dve": f"it{Q}d{Q}ve", "itll": f"it{Q}ll", f"let{Q}s": f"let{Q}s", "maam": f"ma{Q}am",
    "mightnt": f"mightn{Q}t", f"mightnt{Q}ve": f"mightn{Q}t{Q}ve", f"mightn{Q}tve": f"mightn{Q}t{Q}ve",
    "mightve": f"might{Q}ve", "mustnt": f"mustn{Q}t", "mustve": f"must{Q}ve", "neednt": f"needn{Q}t",
    "notve": f"not{Q}ve", "oclock": f"o{Q}clock", "oughtnt": f"oughtn{Q}t", f"ow{Q}s{Q}at": f"{Q}ow{Q}s{Q}at",
    f"{Q}ows{Q}at": f"{Q}ow{Q}s{Q}at", f"{Q}ow{Q}sat": f"{Q}ow{Q}s{Q}at", "shant": f"shan{Q}t",
    f"shed{Q}ve": f"she{Q}d{Q}ve", f"she{Q}dve": f"she{Q}d{Q}ve", f"she{Q}s": f"she{Q}s",
    "shouldve": f"should{Q}ve", "shouldnt": f"shouldn{Q}t", f"shouldnt{Q}ve": f"shouldn{Q}t{Q}ve",
    f"shouldn{Q}tve": f"shouldn{Q}t{Q}ve", f"somebody{Q}d": "somebodyd",
    f"somebodyd{Q}ve": f"somebody{Q}d{Q}ve", f"somebody{Q}dve": f"somebody{Q}d{Q}ve",
    "somebodyll": f"somebody{Q}ll", "somebodys": f"somebody{Q}s", "someoned": f"someone{Q}d",
    f"someoned{Q}ve": f"someone{Q}d{Q}ve", f"someone{Q}dve": f"someone{Q}d{Q}ve",
    "someonell": f"someone{Q}ll", "someones": f"someone{Q}s", "somethingd": f"something{Q}d",
    f"somethingd{Q}ve": f"something{Q}d{Q}ve", f"something{Q}dve": f"something{Q}d{Q}ve",
    "somethingll": f"something{Q}ll", "thats": f"that{Q}s", "thered": f"there{Q}d",
    f"thered{Q}ve": f"there{Q}d{Q}ve", f"there{Q}dve": f"there{Q}d{Q}ve", "therere": f"there{Q}re",
    "theres": f"there{Q}s", "theyd": f"they{Q}d", f"theyd{Q}ve": f"they{Q}d{Q}ve",
    f"they{Q}dve": f"they{Q}d{Q}ve", "theyll": f"they{Q}ll", "theyre": f"they{Q}re", "theyve": f"they{Q}ve",
    "twas": f"{Q}twas", "wasnt": f"wasn{Q}t", f"wed{Q}ve": f"we{Q}d{Q}ve", f"we{Q}dve": f"we{Q}d{Q}ve",
    "weve": "we've", "werent": f"weren{Q}t", "whatll": f"what{Q}ll", "whatre": f"what{Q}re",
    "whats": f"what{Q}s", "whatve": f"what{Q}ve", "whens": f"when{Q}s", "whered": f"where{Q}d",
    "wheres": "where's", "whereve": f"where{Q}ve", "whod": f"who{Q}d", f"whod{Q}ve": f"who{Q}d{Q}ve",
    f"who{Q}dve": f"who{Q}d{Q}ve", "wholl": f"who{Q}ll", "whos": f"who{Q}s", "whove": "who've",
    "whyll": f"why{Q}ll", "whyre": f"why{Q}re", "whys": f"why{Q}s", "wont": f"won{Q}t",
    "wouldve": f"would{Q}ve", "wouldnt": f"wouldn{Q}t", f"wouldnt{Q}ve": f"wouldn{Q}t{Q}ve",
    f"wouldn{Q}tve": f"wouldn{Q}t{Q}ve", "yall": f"y{Q}all", f"yall{Q}ll": f"y{Q}all{Q}ll",
    f"y{Q}allll": f"y{Q}all{Q}ll", f"yall{Q}d{Q}ve": f"y{Q}all{Q}d{Q}ve", f"y{Q}alld{Q}ve": f"y{Q}all{Q}d{Q}ve",
    f"y{Q}all{Q}dve": f"y{Q}all{Q}d{Q}ve", "youd": f"you{Q}d", f"youd{Q}ve": f"you{Q}d{Q}ve",
    f"you{Q}dve": f"you{Q}d{Q}ve", "youll": f"you{Q}ll", "youre": f"you{Q}re", "youve": f"you{Q}ve",
}


class OfficialVizWizEval:
    """VizWiz API vqaEval.py's VQAEval (accuracy and evaluate_unanswerability), transcribed."""

    def __init__(self, imgToQA, resImgToQA, n=2):
        self.n = n
        self.accuracy = {}
        self.evalQA = {}
        self.unanswerability = {}
        self.gts_all = imgToQA
        self.res_all = resImgToQA
        self.contractions = dict(OFFICIAL_VIZWIZ_CONTRACTIONS)
        self.manualMap = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
        self.articles = ["a", "an", "the"]
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
        self.commaStrip = re.compile(r"(\d)(\,)(\d)")
        self.punct = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
                      ">", "<", "@", "`", ",", "?", "!"]

    def evaluate(self):
        imgs = list(self.gts_all)
        gts = {img: self.gts_all[img] for img in imgs}
        res = {img: self.res_all[img] for img in imgs}
        accQA = []
        accAnsType = {}
        for img in imgs:
            resAns = res[img]["answer"]
            resAns = resAns.replace("\n", " ")
            resAns = resAns.replace("\t", " ")
            resAns = resAns.strip()
            resAns = self.processPunctuation(resAns)
            resAns = self.processDigitArticle(resAns)
            gtAcc = []
            for i, ans in enumerate(gts[img]["answers"]):
                otherGTAns = [item for j, item in enumerate(gts[img]["answers"]) if i != j]
                matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
                acc = min(1, float(len(matchingAns)) / 3)
                gtAcc.append(acc)
            avgGTAcc = float(sum(gtAcc)) / len(gtAcc)
            accQA.append(avgGTAcc)
            accAnsType.setdefault(gts[img]["answer_type"], []).append(avgGTAcc)
            self.evalQA[img] = avgGTAcc
        self.accuracy["overall"] = round(100 * float(sum(accQA)) / len(accQA), self.n)
        self.accuracy["perAnswerType"] = {
            t: round(100 * float(sum(v)) / len(v), self.n) for t, v in accAnsType.items()}

    def evaluate_unanswerability(self):
        pred = []
        gt_labels = []
        for img in self.gts_all:
            gt_labels.append(self.gts_all[img]["answerable"])
            pred.append(self.res_all[img]["answerable"])
        gt_labels = np.array(gt_labels)
        pred = np.array(pred)
        gt_labels_n = 1 - gt_labels
        pred_n = 1.0 - pred
        self.average_precision = sk_average_precision(gt_labels_n, pred_n)
        self.f1 = sk_f1(gt_labels_n, pred_n > 0.5)
        self.unanswerability["average_precision"] = round(100 * self.average_precision, self.n)
        self.unanswerability["f1_score"] = round(100 * self.f1, self.n)

    def processPunctuation(self, inText):
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) is not None):
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        return self.periodStrip.sub("", outText, re.UNICODE)

    def processDigitArticle(self, inText):
        outText = []
        for word in inText.lower().split():
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        return " ".join(outText)


def sk_binary_clf_curve(y_true, y_score):
    y_true = y_true == 1
    desc_score_indices = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc_score_indices]
    y_true = y_true[desc_score_indices]
    distinct_value_indices = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct_value_indices, y_true.size - 1]
    tps = np.cumsum(y_true * 1.0, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    return fps, tps, y_score[threshold_idxs]


def sk_average_precision(y_true, y_score):
    fps, tps, _ = sk_binary_clf_curve(np.asarray(y_true), np.asarray(y_score, dtype=np.float64))
    ps = tps + fps
    precision = np.zeros_like(tps)
    np.divide(tps, ps, out=precision, where=(ps != 0))
    recall = tps / tps[-1]
    precision = np.hstack((precision[::-1], 1))
    recall = np.hstack((recall[::-1], 0))
    return -np.sum(np.diff(recall) * np.array(precision)[:-1])


def sk_f1(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true) == 1, np.asarray(y_pred) == 1
    tp = np.sum(y_true & y_pred)
    denom = np.sum(y_true) + np.sum(y_pred)
    return 2 * tp / denom if denom else 0.0


def brute_force_ap(y_true, y_score):
    """The definition: sum over distinct thresholds (high to low) of (R_k - R_{k-1}) P_k."""
    pairs = sorted(zip(y_score, y_true), key=lambda t: -t[0])
    n_pos = sum(y_true)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(y_score), reverse=True):
        taken = [y for s, y in pairs if s >= t]
        recall = sum(taken) / n_pos
        ap += (recall - prev_recall) * sum(taken) / len(taken)
        prev_recall = recall
    return ap


# ----------------------------------------------------------------------------- generated data
GT_TOKENS = ["don't", f"don{Q}t", "dont", "what's", f"what{Q}s", "where's", f"where{Q}s", "we've",
             f"we{Q}ve", "who've", "can't", f"can{Q}t", "it's", "unanswerable", "Unanswerable", "yes", "no",
             "2", "two", "a dog", "dog", "the dog", "red", "Red", "t-shirt", "t shirt", "coca-cola",
             "coca cola", "1,000", "1000", "3.5", "nothing.", "none", "0", "o'clock", f"o{Q}clock"]
PRED_TOKENS = GT_TOKENS + ["Dont", "whats", "wheres", "weve", "whove", "cant", "youre", "hes", "oclock",
                           "Whats that?", "The Dog.", " unanswerable\n", "UNANSWERABLE", "Two", "1,000.",
                           "coca-cola!", "t-shirt ", "red\t", "Im", "ive"]


CONTRACTED = ["dont", "whats", "wheres", "weve", "whove", "cant", "youre", "hes", "oclock", "isnt", "Im"]


def random_question(rng: random.Random, i: int) -> tuple[dict, dict]:
    typed = None
    if rng.random() < 0.4:
        # A contraction typed without its apostrophe: which apostrophe the table restores
        # decides the match with straight / typographic ground truth.
        key = rng.choice(CONTRACTED)
        restored = OFFICIAL_VIZWIZ_CONTRACTIONS.get(key, key)
        pool = [restored.replace(Q, "'"), restored.replace("'", Q), key][: rng.randrange(1, 4)]
        typed = rng.choice([key, key.upper(), key + "?", " " + key])
    else:
        pool = rng.sample(GT_TOKENS, rng.randrange(1, 4))
    answers = [{"answer": rng.choice(pool), "answer_confidence": rng.choice(["yes", "maybe", "no"])}
               for _ in range(10)]
    if rng.random() < 0.2:
        answers = [dict(answers[0]) for _ in range(10)]
    answerable = int(rng.random() < 0.7)
    entry = {"image": f"VizWiz_val_{i:08d}.jpg", "question": "what is this?", "answers": answers,
             "answer_type": rng.choice(["yes/no", "number", "other", "unanswerable"]), "answerable": answerable}
    pred = rng.choice([rng.choice(pool), rng.choice(PRED_TOKENS), rng.choice(PRED_TOKENS + CONTRACTED * 3)])
    if typed is not None and rng.random() < 0.7:
        pred = typed
    # a probability with ties (rounded), correlated with the label
    p = min(1.0, max(0.0, round(rng.gauss(0.65 if answerable else 0.35, 0.25), 1)))
    return entry, {"image": entry["image"], "answer": pred, "answerable": p}


@pytest.fixture(scope="module")
def generated():
    rng = random.Random(7)
    rows = [random_question(rng, i) for i in range(3000)]
    return [r[0] for r in rows], [r[1] for r in rows]


def test_the_package_table_is_the_vizwiz_table():
    assert VIZWIZ_CONTRACTIONS == OFFICIAL_VIZWIZ_CONTRACTIONS


def test_every_question_figure_and_answerability_equals_the_official_script(generated):
    anns, results = generated
    ev = OfficialVizWizEval({a["image"]: a for a in anns}, {r["image"]: r for r in results})
    ev.evaluate()
    ev.evaluate_unanswerability()
    ours = evaluate_vizwiz({r["image"]: r["answer"] for r in results}, anns,
                           {r["image"]: r["answerable"] for r in results})
    assert ours["per_question"] == ev.evalQA
    assert ours["official"]["overall"] == ev.accuracy["overall"]
    assert ours["official"]["perAnswerType"] == ev.accuracy["perAnswerType"]
    assert ours["official"]["unanswerability"] == ev.unanswerability
    assert ours["unanswerable_ap"] == ev.average_precision
    assert ours["unanswerable_ap"] == pytest.approx(brute_force_ap(
        [1 - a["answerable"] for a in anns], [1 - r["answerable"] for r in results]), abs=1e-12)
    assert ours["unanswerable_f1"] == pytest.approx(ev.f1, abs=1e-15)


def test_the_generated_questions_depend_on_the_vizwiz_table(generated):
    """With VQA's straight-apostrophe table a sizeable share of these scores would differ."""
    anns, results = generated
    differ = 0
    for a, r in zip(anns, results):
        gts = [x["answer"] for x in a["answers"]]
        vqa = sum(min(1, sum(g == normalize_vqa_answer(r["answer"]) for j, g in enumerate(gts) if j != i) / 3)
                  for i in range(10))
        viz = sum(min(1, sum(g == normalize_vizwiz_answer(r["answer"]) for j, g in enumerate(gts) if j != i) / 3)
                  for i in range(10))
        differ += vqa != viz
    assert differ > 300


def test_written_submission_is_read_by_the_official_loader(generated, tmp_path):
    anns, results = generated
    ann_path = tmp_path / "val.json"
    ann_path.write_text(json.dumps(anns))
    sub = write_vizwiz_submission(tmp_path / "results.json", {r["image"]: r["answer"] for r in results},
                                  answerable={r["image"]: r["answerable"] for r in results})
    # The VizWiz API's VQA class indexes a results file like an annotation file.
    dataset = json.loads(sub.read_text())
    img_to_qa = {x["image"]: x for x in dataset}
    assert len(img_to_qa) == len(dataset) == len(anns)
    ev = OfficialVizWizEval({a["image"]: a for a in anns}, img_to_qa)
    ev.evaluate()
    ev.evaluate_unanswerability()
    ours = score("vizwiz", sub, ann_path)
    assert ours["official"]["overall"] == ev.accuracy["overall"]
    assert ours["official"]["unanswerability"] == ev.unanswerability
