"""VQA v2: every per-question score and every printed figure equals the official script's.

``OfficialVQAEval`` below is a loop-for-loop transcription, written for this test, of
GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``: ``master`` at a013f00
("Fixed processing answers bug", 2021) and ``legacy`` at c4e6a0e (the python3 branch,
the pre-2021 rules). It mutates the answer dicts in place and compares whole dicts exactly
like the original, and carries its own copy of the contractions table, so a slip in the
package's table or rules shows up as a mismatch. It runs on a few thousand generated
questions built to hit every rule: punctuation next to / away from spaces, digit commas,
periods, number words, articles, contractions, case, whitespace (newline, tab, Unicode
spaces), Unicode letters and digits, unanimous and non-unanimous answer sets, answer
records without ``answer_id``.
"""

from __future__ import annotations

import copy
import json
import random
import re

import pytest

from lxmert.evaluation import score, evaluate_vqa, vqa_accuracy, write_vqa_submission
from lxmert.evaluation.vqa import CONTRACTIONS

# The master table as it stands in vqaEval.py (a013f00).
OFFICIAL_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}


class OfficialVQAEval:
    """vqaEval.py's VQAEval, transcribed; ``master=False`` gives the pre-2021 loop."""

    def __init__(self, qa, res, n=2, master=True):
        self.n = n
        self.master = master
        self.accuracy = {}
        self.evalQA = {}
        self.qa = qa            # {question_id: annotation}, mutated like the original
        self.res = res          # {question_id: {"answer": ...}}
        self.contractions = dict(OFFICIAL_CONTRACTIONS)
        self.manualMap = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
        self.articles = ["a", "an", "the"]
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
        self.commaStrip = re.compile(r"(\d)(\,)(\d)")
        self.punct = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
                      ">", "<", "@", "`", ",", "?", "!"]

    def evaluate(self, quesIds):
        gts = {}
        res = {}
        for quesId in quesIds:
            gts[quesId] = self.qa[quesId]
            res[quesId] = self.res[quesId]
        accQA = []
        accQuesType = {}
        accAnsType = {}
        for quesId in quesIds:
            if self.master:
                for ansDic in gts[quesId]["answers"]:
                    ansDic["answer"] = ansDic["answer"].replace("\n", " ")
                    ansDic["answer"] = ansDic["answer"].replace("\t", " ")
                    ansDic["answer"] = ansDic["answer"].strip()
                resAns = res[quesId]["answer"]
                resAns = resAns.replace("\n", " ")
                resAns = resAns.replace("\t", " ")
                resAns = resAns.strip()
                gtAcc = []
                gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]
                if len(set(gtAnswers)) > 1:
                    for ansDic in gts[quesId]["answers"]:
                        ansDic["answer"] = self.processPunctuation(ansDic["answer"])
                        ansDic["answer"] = self.processDigitArticle(ansDic["answer"])
                    resAns = self.processPunctuation(resAns)
                    resAns = self.processDigitArticle(resAns)
            else:
                resAns = res[quesId]["answer"]
                resAns = resAns.replace("\n", " ")
                resAns = resAns.replace("\t", " ")
                resAns = resAns.strip()
                resAns = self.processPunctuation(resAns)
                resAns = self.processDigitArticle(resAns)
                gtAcc = []
                gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]
                if len(set(gtAnswers)) > 1:
                    for ansDic in gts[quesId]["answers"]:
                        ansDic["answer"] = self.processPunctuation(ansDic["answer"])
            for gtAnsDatum in gts[quesId]["answers"]:
                otherGTAns = [item for item in gts[quesId]["answers"] if item != gtAnsDatum]
                matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
                acc = min(1, float(len(matchingAns)) / 3)
                gtAcc.append(acc)
            quesType = gts[quesId]["question_type"]
            ansType = gts[quesId]["answer_type"]
            avgGTAcc = float(sum(gtAcc)) / len(gtAcc)
            accQA.append(avgGTAcc)
            accQuesType.setdefault(quesType, []).append(avgGTAcc)
            accAnsType.setdefault(ansType, []).append(avgGTAcc)
            self.evalQA[quesId] = avgGTAcc
        self.accuracy["overall"] = round(100 * float(sum(accQA)) / len(accQA), self.n)
        self.accuracy["perQuestionType"] = {
            t: round(100 * float(sum(v)) / len(v), self.n) for t, v in accQuesType.items()}
        self.accuracy["perAnswerType"] = {
            t: round(100 * float(sum(v)) / len(v), self.n) for t, v in accAnsType.items()}

    def processPunctuation(self, inText):
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) is not None):
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        outText = self.periodStrip.sub("", outText, re.UNICODE)
        return outText

    def processDigitArticle(self, inText):
        outText = []
        tempText = inText.lower().split()
        for word in tempText:
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        return " ".join(outText)


# ----------------------------------------------------------------------------- generated data
TOKENS = [
    "yes", "no", "Yes", "NO", "No", "2", "two", "Two", "TEN", "ten", "none", "zero", "eleven", "red", "Red",
    "a", "an", "the", "The", "A", "dog", "dogs", "dont", "Dont", "DONT", "whats", "Im", "im", "cant", "can't",
    "don't", "don\u2019t", "oclock", "youre", "somebody'd", "y'allll", "t-shirt", "t shirt", "tshirt",
    "black/white", "black / white", "1,000", "1000", "1,0", "2.5", "2.50", "25", ".5", "u.s.", "u.s.a", "usa",
    "mr.", "etc...", "hello,world", "hello, world", "(a)", "( a )", "[b]", "{c}", "x=y", "a+b", "a\\b",
    "snake_case", "<tag>", "@home", "`tick`", "why?", "what?!", "semi;colon", "colon:", "it's", "rock'n'roll",
    "\u00e9t\u00e9", "caf\u00e9", "CAF\u00c9", "\u0130stanbul", "\u03a3\u039f\u03a3", "stra\u00dfe",
    "\uff13", "\u0663,\u0664", "\u0661.\u0662", "\u00bd", "\u2460", "...", ".", ",", "-", "!!", "??",
]
SEPARATORS = [" ", " ", " ", "  ", "", "\t", "\n", "\u00a0", "\u2003", " - ", ", ", "/"]
EDGES = ["", "", "", "", " ", "  ", "\n", "\t", " \t", "\u00a0", "\u3000"]
SUFFIXES = ["", "", "", "", ".", "?", "!", ",", "..", " .", "'"]


def random_answer(rng: random.Random) -> str:
    words = [rng.choice(TOKENS) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
    text = words[0]
    for w in words[1:]:
        text += rng.choice(SEPARATORS) + w
    return rng.choice(EDGES) + text + rng.choice(SUFFIXES) + rng.choice(EDGES)


def perturb(rng: random.Random, text: str) -> str:
    """A variant that one of the normalisation steps may (or may not) undo."""
    kind = rng.randrange(8)
    if kind == 0:
        return text.upper()
    if kind == 1:
        return text.capitalize()
    if kind == 2:
        return rng.choice(EDGES) + text + rng.choice(EDGES)
    if kind == 3:
        return text + rng.choice(SUFFIXES[4:])
    if kind == 4:
        return rng.choice(["the ", "a ", "The "]) + text
    if kind == 5:
        return text.replace(" ", rng.choice(SEPARATORS))
    if kind == 6:
        return text.replace("two", "2").replace("2", "two")
    return text


def random_question(rng: random.Random, qid: int) -> tuple[dict, str]:
    mode = rng.random()
    base = random_answer(rng)
    if mode < 0.3:                              # unanimous: the rules differ most here
        texts = [base] * 10
    elif mode < 0.6:                            # one answer in spellings that may normalise together
        texts = [perturb(rng, base) if rng.random() < 0.5 else base for _ in range(10)]
    else:                                       # a few distinct answers
        pool = [base] + [random_answer(rng) for _ in range(rng.randrange(1, 4))]
        texts = [rng.choice(pool) for _ in range(10)]
    if rng.random() < 0.05:
        # Hand-made records without answer_id: identical ones exclude each other in the
        # official "item != gtAnsDatum".
        answers = [{"answer": t, "answer_confidence": "yes"} for t in texts]
    else:
        answers = [{"answer": t, "answer_confidence": rng.choice(["yes", "maybe", "no"]), "answer_id": i + 1}
                   for i, t in enumerate(texts)]
    choice = rng.random()
    if choice < 0.5:
        pred = perturb(rng, rng.choice(texts))
    elif choice < 0.8:
        pred = rng.choice(texts)
    else:
        pred = random_answer(rng)
    ann = {"question_id": qid, "image_id": qid // 3, "answers": answers,
           "answer_type": rng.choice(["yes/no", "number", "other"]),
           "question_type": rng.choice(["what is", "how many", "is the", "what color", "none of the above"])}
    return ann, pred


@pytest.fixture(scope="module")
def generated():
    rng = random.Random(20240615)
    anns, preds = [], {}
    for qid in range(3000):
        ann, pred = random_question(rng, 1000 + qid)
        anns.append(ann)
        preds[ann["question_id"]] = pred
    return {"annotations": anns}, preds


def official(annotations, preds, master):
    qa = {a["question_id"]: a for a in copy.deepcopy(annotations["annotations"])}
    ev = OfficialVQAEval(qa, {q: {"answer": p} for q, p in preds.items()}, master=master)
    ev.evaluate(list(qa))
    return ev


def test_the_package_table_is_the_official_table():
    assert CONTRACTIONS == OFFICIAL_CONTRACTIONS


@pytest.mark.parametrize("rules", ["master", "legacy"])
def test_every_question_and_every_printed_figure_equals_the_official_script(generated, rules):
    annotations, preds = generated
    ev = official(annotations, preds, master=rules == "master")
    ours = evaluate_vqa(preds, copy.deepcopy(annotations), rules=rules)
    mismatched = [q for q in ev.evalQA if ours["per_question"][q] != ev.evalQA[q]]
    assert not mismatched, [(q, preds[q]) for q in mismatched[:5]]
    assert ours["official"] == {"overall": ev.accuracy["overall"],
                                "perAnswerType": ev.accuracy["perAnswerType"],
                                "perQuestionType": ev.accuracy["perQuestionType"]}
    by_item = {a["question_id"]: vqa_accuracy(preds[a["question_id"]], a["answers"], rules=rules)
               for a in copy.deepcopy(annotations)["annotations"]}
    assert by_item == ev.evalQA


def test_the_generated_questions_exercise_the_rules(generated):
    annotations, preds = generated
    master = official(annotations, preds, master=True).evalQA
    legacy = official(annotations, preds, master=False).evalQA
    unanimous = [a["question_id"] for a in annotations["annotations"]
                 if len({x["answer"] for x in a["answers"]}) == 1]
    differ = [q for q in master if master[q] != legacy[q]]
    # The two eras disagree on a large share of these questions, in both directions, and
    # every score level occurs.
    assert len(unanimous) > 600 and len(differ) > 500
    assert any(master[q] > legacy[q] for q in differ) and any(master[q] < legacy[q] for q in differ)
    assert {round(v, 6) for v in master.values()} >= {0.0, 0.3, 0.6, 0.9, 1.0}


def test_official_file_round_trip_through_the_loader_rules(generated, tmp_path):
    """The submission the package writes is what vqa.py's loadRes accepts (a JSON list of
    objects whose question_id set equals the annotations'), and scores the same."""
    annotations, preds = generated
    ann_path = tmp_path / "annotations.json"
    ann_path.write_text(json.dumps(annotations))
    sub = write_vqa_submission(tmp_path / "results.json", preds)
    anns = json.loads(sub.read_text())
    assert type(anns) == list, "results in not an array of objects"
    assert {a["question_id"] for a in anns} == {a["question_id"] for a in annotations["annotations"]}
    assert all(isinstance(a["answer"], str) for a in anns)
    ev = official(annotations, {a["question_id"]: a["answer"] for a in anns}, master=True)
    assert score("vqa", sub, ann_path)["official"]["overall"] == ev.accuracy["overall"]
