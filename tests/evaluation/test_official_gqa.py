"""GQA: every metric equals the challenge's ``eval.py`` (the script distributed with the GQA
v1.2 questions), question by question and figure by figure.

``official_eval`` is a transcription, written for this test, of that script's functions
and main loop (``--consistency`` and ``--grounding`` on): accuracy, binary/open, validity
and plausibility with the ``belongs`` rule, entailed consistency, grounding (spatial maps
as published; object-based attention with the one-word fix its branch needs - it reads
``cells`` where it means ``attentionMap``), the chi-square distribution and the per-type
tables. The generated questions cover "Common" detailed types, unbalanced questions,
groups without a global group, entailment chains, and attention boxes that straddle,
contain or miss the gold regions.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pytest

from lxmert.evaluation import score, evaluate_gqa, write_gqa_submission


def official_eval(questions, predictions, choices, scenes, attentions, object_features, map_size=7):
    def toScore(b):
        return float(1 if b else 0)

    def avg(l):
        if len(l) == 0:
            return 0
        return float(sum(l)) / len(l)

    scores = {"accuracy": [], "binary": [], "open": [], "validity": [], "plausibility": [],
              "consistency": [], "accuracyPerStructuralType": defaultdict(list),
              "accuracyPerSemanticType": defaultdict(list), "accuracyPerLength": defaultdict(list),
              "accuracyPerSteps": defaultdict(list), "grounding": []}
    dist = {"gold": defaultdict(lambda: defaultdict(int)), "predicted": defaultdict(lambda: defaultdict(int))}

    def getWordsNum(question):
        return len(question["question"].split())

    def getStepsNum(question):
        return len([c for c in question["semantic"]
                    if not (any([o in "{}: {}".format(c["operation"], c["argument"])
                                 for o in ["exist", "query: name", "choose name"]]))])

    def belongs(element, group, question):
        if "Common" in question["types"]["detailed"]:
            group = ["color", "material", "shape"]
        return element in group

    def updateConsistency(questionId, question, questions, correct):
        inferredQuestions = [eid for eid in question["entailed"] if eid != questionId]
        if correct and len(inferredQuestions) > 0:
            cosnsitencyScores = []
            for eid in inferredQuestions:
                gold = questions[eid]["answer"]
                predicted = predictions[eid]
                score = toScore(predicted == gold)
                cosnsitencyScores.append(score)
            scores["consistency"].append(avg(cosnsitencyScores))

    def yrange(c):
        return (c[1], c[3])

    def xrange(c):
        return (c[0], c[2])

    def length(r):
        if r is None:
            return 0
        return float(r[1] - r[0])

    def size(c):
        return length(xrange(c)) * length(yrange(c))

    def intersection(r1, r2):
        ir = (max(r1[0], r2[0]), min(r1[1], r2[1]))
        if ir[1] > ir[0]:
            return ir
        return None

    def intersectionSize(c1, c2):
        return length(intersection(xrange(c1), xrange(c2))) * length(intersection(yrange(c1), yrange(c2)))

    def intersectionRate(c1, c2):
        return float(intersectionSize(c1, c2)) / size(c1)

    def getCell(i, j):
        edge = float(1) / map_size
        return (edge * i, edge * j, edge * (i + 1), edge * (j + 1))

    def getRegion(sceneGraph, objectId):
        obj = sceneGraph["objects"][objectId]
        x0 = float(obj["x"]) / sceneGraph["width"]
        y0 = float(obj["y"]) / sceneGraph["height"]
        x1 = float(obj["x"] + obj["w"]) / sceneGraph["width"]
        y1 = float(obj["y"] + obj["h"]) / sceneGraph["height"]
        return (x0, y0, x1, y1)

    def computeGroundingScore(question, sceneGraph, attentionMap):
        regions = []
        regions += [getRegion(sceneGraph, pointer) for pointer in question["annotations"]["question"].values()]
        regions += [getRegion(sceneGraph, pointer) for pointer in question["annotations"]["fullAnswer"].values()]
        if any(("scene" in c) for c in question["semantic"]):
            regions.append((0, 0, 1, 1))
        if object_features:
            cells = [((x0, y0, x1, y1), attention) for x0, y0, x1, y1, attention in attentionMap]
        else:
            cells = [(getCell(i, j), attentionMap[i][j]) for i in range(map_size) for j in range(map_size)]
        scores = []
        for region in regions:
            for cell, attention in cells:
                scores.append(attention * intersectionRate(cell, region))
        return sum(scores)

    def chiSquare(goldDist, predictedDist):
        sumScore, sumOverall = 0, 0
        for group in goldDist:
            score, overall = 0, 0
            for ans in goldDist[group]:
                e = goldDist[group][ans]
                o = predictedDist[group].get(ans, 0)
                score += ((float(o - e) ** 2) / e)
                overall += goldDist[group][ans]
            sumScore += score * overall
            sumOverall += overall
        avgScore = float(sumScore) / sumOverall
        return avgScore

    per_question = {}
    for qid, question in questions.items():
        if question["isBalanced"]:
            gold = question["answer"]
            predicted = predictions[qid]
            correct = (predicted == gold)
            score = toScore(correct)
            per_question[qid] = score
            wordsNum = getWordsNum(question)
            stepsNum = getStepsNum(question)
            scores["accuracy"].append(score)
            scores["accuracyPerLength"][wordsNum].append(score)
            scores["accuracyPerSteps"][stepsNum].append(score)
            scores["accuracyPerStructuralType"][question["types"]["structural"]].append(score)
            scores["accuracyPerSemanticType"][question["types"]["semantic"]].append(score)
            answerType = "open" if question["types"]["structural"] == "query" else "binary"
            scores[answerType].append(score)
            valid = (belongs(predicted, choices[qid]["valid"], question) if choices else False)
            scores["validity"].append(toScore(valid))
            plausible = (belongs(predicted, choices[qid]["plausible"], question) if choices else False)
            scores["plausibility"].append(toScore(plausible))
            if attentions is not None:
                groundingScore = computeGroundingScore(question, scenes[question["imageId"]], attentions[qid])
                if groundingScore is not None:
                    scores["grounding"].append(groundingScore)
            globalGroup = question["groups"]["global"]
            if globalGroup is not None:
                dist["gold"][globalGroup][gold] += 1
                dist["predicted"][globalGroup][predicted] += 1
            updateConsistency(qid, question, questions, correct)
    scores["distribution"] = chiSquare(dist["gold"], dist["predicted"]) / 100
    for k in ["binary", "open", "accuracy", "consistency", "validity", "plausibility", "grounding", "distribution"]:
        if isinstance(scores[k], list):
            scores[k] = avg(scores[k]) * 100
    for k in ["accuracyPerStructuralType", "accuracyPerSemanticType", "accuracyPerSteps", "accuracyPerLength"]:
        for t in scores[k]:
            scores[k][t] = avg(scores[k][t]) * 100, len(scores[k][t])
    scores["per_question"] = per_question
    return scores


ANSWERS = ["yes", "no", "red", "blue", "metal", "wood", "color", "material", "shape", "left", "right",
           "cat", "dog", "Yes", "red "]
OPS = [("select", "cat"), ("select", "scene"), ("filter color", "red"), ("relate", "to the left of,s"),
       ("exist", "?"), ("query", "name"), ("choose", "name"), ("verify color", "red"), ("and", ""),
       ("query", "color"), ("same", "material")]


def random_world(rng: random.Random, n: int, object_features: bool, map_size: int):
    scenes = {}
    for img in range(n // 4):
        w, h = rng.choice([(640, 480), (500, 375), (333, 500)])
        objects = {}
        for o in range(rng.randrange(1, 6)):
            x, y = rng.randrange(0, w - 10), rng.randrange(0, h - 10)
            objects[f"{img}{o:03d}"] = {"x": x, "y": y, "w": rng.randrange(1, w - x), "h": rng.randrange(1, h - y)}
        scenes[f"img{img}"] = {"width": w, "height": h, "objects": objects}
    qids = [f"{rng.randrange(10**7, 10**8)}{i}" for i in range(n)]
    questions, choices, preds, attentions = {}, {}, {}, {}
    for qid in qids:
        img = f"img{rng.randrange(n // 4)}"
        objs = list(scenes[img]["objects"])
        structural = rng.choice(["query", "verify", "choose", "logical", "compare"])
        answer = rng.choice(ANSWERS[:12])
        questions[qid] = {
            "imageId": img, "question": " ".join(["what"] * rng.randrange(2, 9)) + "?", "answer": answer,
            "isBalanced": rng.random() < 0.7,
            "types": {"structural": structural, "semantic": rng.choice(["attr", "rel", "obj", "cat", "global"]),
                      "detailed": rng.choice(["existRelS", "materialVerify", "compareCommon", "sameMaterialCommon",
                                              "colorQuery", "common"])},
            "semantic": [{"operation": op, "argument": arg, "dependencies": []}
                         for op, arg in rng.sample(OPS, rng.randrange(1, 5))],
            "entailed": rng.sample(qids, rng.randrange(0, 4)) if rng.random() < 0.5 else [],
            "groups": {"global": rng.choice([None, "color", "material", "place"]), "local": "x"},
            "annotations": {"answer": {}, "question": {str(k): rng.choice(objs) for k in range(rng.randrange(0, 3))},
                            "fullAnswer": {str(k): rng.choice(objs) for k in range(rng.randrange(0, 2))}},
        }
        choices[qid] = {"valid": rng.sample(ANSWERS, 5), "plausible": rng.sample(ANSWERS, 3)}
        preds[qid] = answer if rng.random() < 0.5 else rng.choice(ANSWERS)
        if object_features:
            boxes = []
            for _ in range(rng.randrange(1, 8)):
                x0, y0 = rng.random() * 0.9, rng.random() * 0.9
                boxes.append([x0, y0, x0 + rng.random() * (1 - x0) + 1e-3, y0 + rng.random() * (1 - y0) + 1e-3,
                              rng.random()])
            attentions[qid] = boxes
        else:
            attentions[qid] = [[rng.random() / map_size ** 2 for _ in range(map_size)] for _ in range(map_size)]
    return questions, choices, scenes, preds, attentions


@pytest.mark.parametrize("object_features, map_size", [(True, 7), (False, 7), (False, 5)])
def test_every_metric_equals_the_official_script(object_features, map_size):
    rng = random.Random(13 + map_size + object_features)
    questions, choices, scenes, preds, attentions = random_world(rng, 2000, object_features, map_size)
    off = official_eval(questions, preds, choices, scenes, attentions, object_features, map_size)
    ours = evaluate_gqa(preds, questions, choices=choices, scene_graphs=scenes, attentions=attentions,
                        attention_kind="boxes" if object_features else "grid")
    assert ours["per_question"] == off["per_question"]
    for name in ("accuracy", "binary", "open", "validity", "plausibility", "consistency", "grounding"):
        assert ours[name] * 100 == off[name], name
        assert ours["official"][name] == float(f"{off[name]:.2f}"), name
    assert ours["distribution"] == off["distribution"]
    for ours_key, off_key in (("per_structural_type", "accuracyPerStructuralType"),
                              ("per_semantic_type", "accuracyPerSemanticType"),
                              ("per_steps", "accuracyPerSteps"), ("per_length", "accuracyPerLength")):
        assert {k: v * 100 for k, v in ours[ours_key].items()} == {k: v[0] for k, v in off[off_key].items()}
        assert ours["official"][ours_key] == {k: (float(f"{v[0]:.2f}"), v[1]) for k, v in off[off_key].items()}
    assert ours["absent"] == {}
    # the generated data exercise the rules
    commons = [q for q, e in questions.items() if e["isBalanced"] and "Common" in e["types"]["detailed"]]
    assert len(commons) > 200 and 0 < off["grounding"] and 0 < off["consistency"] < 100


def test_without_choices_and_attentions_the_metrics_are_absent_not_zero():
    rng = random.Random(1)
    questions, _, _, preds, _ = random_world(rng, 200, True, 7)
    ours = evaluate_gqa(preds, questions)
    for name in ("validity", "plausibility", "grounding"):
        assert name not in ours and name not in ours["official"]
        assert name in ours["absent"]
    assert "choices" in ours["absent"]["validity"] and "attention" in ours["absent"]["grounding"]


def test_written_submission_and_files_are_read_as_the_official_script_reads_them(tmp_path):
    rng = random.Random(2)
    questions, choices, scenes, preds, attentions = random_world(rng, 400, True, 7)
    paths = {}
    for name, obj in (("questions", questions), ("choices", choices), ("scenes", scenes)):
        paths[name] = tmp_path / f"val_{name}.json"
        paths[name].write_text(json.dumps(obj))
    paths["attentions"] = tmp_path / "val_attentions.json"
    paths["attentions"].write_text(json.dumps([{"questionId": q, "attention": a} for q, a in attentions.items()]))
    sub = write_gqa_submission(tmp_path / "val_predictions.json", preds)
    loaded = json.loads(sub.read_text())
    loaded = {p["questionId"]: p["prediction"] for p in loaded}
    assert loaded == preds
    off = official_eval(questions, loaded, choices, scenes, attentions, True)
    ours = score("gqa", sub, paths["questions"], choices=paths["choices"], scene_graphs=paths["scenes"],
                    attentions=paths["attentions"])
    assert ours["official"]["accuracy"] == float(f"{off['accuracy']:.2f}")
    assert ours["grounding"] * 100 == off["grounding"] and ours["validity"] * 100 == off["validity"]
