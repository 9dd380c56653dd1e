"""A-OKVQA, VizWiz and classification files derived from a generated world (`lxmert synth`).

`derive_more_tasks(world)` writes, next to the world's own files and in the official
layouts that `AOKVQADataset`, `VizWizDataset` and `ClassificationDataset` read::

    WORLD/aokvqa/{train,val}.json     from vqa/{train,minival}.json: the majority answer is
                                      the correct choice, three distractors come from the
                                      same answer family (colours, shapes, counts, ...);
                                      direct_answers = the ten annotator answers;
                                      image_id = the world's img_id (use image_format="{image_id}")
    WORLD/vizwiz/{train,val}.json     from the same questions; a share `unanswerable_rate`
                                      is asked about ANOTHER image of the split (the object
                                      it describes is then usually absent): ten
                                      "unanswerable" answers, answerable 0, answer_type
                                      "unanswerable"; image = "<img_id>.jpg"
    WORLD/classify/{train,val}.jsonl  binary caption-image agreement, hateful-memes shaped:
                                      a caption of the image (label 1) or of another image
                                      of the split (label 0), half each

Every task needs both modalities, as the world's own tasks do. Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from lxmert.atomic import atomic_write_text
from lxmert.data.synth.language import COUNT_ANSWERS, SIDES, YES_NO
from lxmert.data.synth.scenes import COLOURS, MATERIALS, SHAPES, SIZES

__all__ = ["derive_more_tasks"]


def _families() -> list[tuple[str, ...]]:
    return [COLOURS, tuple(MATERIALS), SHAPES, SIZES, YES_NO, COUNT_ANSWERS, SIDES]


def _choices(answer: str, rng: random.Random, families: Sequence[tuple[str, ...]]) -> list[str]:
    family = next((f for f in families if answer in f), ())
    pool = [a for a in family if a != answer]
    rng.shuffle(pool)
    picked = pool[:3]
    if len(picked) < 3:  # yes/no: fill from the other small families
        rest = [a for f in families for a in f if a != answer and a not in picked and f is not family]
        rng.shuffle(rest)
        picked += rest[: 3 - len(picked)]
    choices = [answer, *picked]
    rng.shuffle(choices)
    return choices


def _answers(entry: dict) -> list[str]:
    return [a["answer"] if isinstance(a, dict) else str(a) for a in entry.get("answers") or []]


def _write(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data) + "\n")


def derive_more_tasks(world: str | Path, *, seed: int = 0, unanswerable_rate: float = 0.25,
                        difficult_rate: float = 0.1) -> dict[str, int]:
    """Write the three task folders under `world`; returns {relative file: entries}."""
    world = Path(world)
    families = _families()
    rng = random.Random(seed)
    written: dict[str, int] = {}
    for split, source in (("train", "train"), ("val", "minival")):
        path = world / "vqa" / f"{source}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a generated world (run `lxmert synth` first)")
        vqa = json.loads(path.read_text())
        images = sorted({e["img_id"] for e in vqa})
        aok, viz = [], []
        for e in vqa:
            answers = _answers(e)
            if len(answers) < 1:
                continue
            top = Counter(answers).most_common(1)[0][0]
            choices = _choices(top, rng, families)
            aok.append({
                "split": split, "question_id": f"{split}_{e['question_id']}", "image_id": e["img_id"],
                "question": e["sent"], "choices": choices, "correct_choice_idx": choices.index(top),
                "direct_answers": answers, "difficult_direct_answer": rng.random() < difficult_rate,
                "rationales": [],
            })
            if rng.random() < unanswerable_rate and len(images) > 1:
                other = rng.choice([i for i in images if i != e["img_id"]])
                viz.append({"image": f"{other}.jpg", "question": e["sent"],
                            "answers": [{"answer": "unanswerable", "answer_confidence": "yes"}] * 10,
                            "answerable": 0, "answer_type": "unanswerable"})
            else:
                atype = "yes/no" if top in ("yes", "no") else "number" if top.isdigit() else "other"
                viz.append({"image": f"{e['img_id']}.jpg", "question": e["sent"],
                            "answers": [{"answer": a, "answer_confidence": "yes"} for a in answers],
                            "answerable": 1, "answer_type": atype})
        # VizWiz has one question per image: keep the first question of each image file name
        seen: set[str] = set()
        viz = [v for v in viz if not (v["image"] in seen or seen.add(v["image"]))]  # type: ignore[func-returns-value]
        _write(world / "aokvqa" / f"{split}.json", aok)
        _write(world / "vizwiz" / f"{split}.json", viz)
        written[f"aokvqa/{split}.json"] = len(aok)
        written[f"vizwiz/{split}.json"] = len(viz)

        pre = world / "lxmert" / ("mscoco_train.json" if split == "train" else "mscoco_minival.json")
        captions = {d["img_id"]: list(d["sentf"].get("mscoco", [])) for d in json.loads(pre.read_text())}
        ids = sorted(i for i, c in captions.items() if c)
        lines = []
        for k, img in enumerate(ids):
            for j, cap in enumerate(captions[img][:2]):
                if rng.random() < 0.5:
                    lines.append({"id": f"{split}_{k}_{j}", "img_id": img, "text": cap, "labels": 1})
                else:
                    other = rng.choice([i for i in ids if i != img])
                    lines.append({"id": f"{split}_{k}_{j}", "img_id": img,
                                  "text": rng.choice(captions[other]), "labels": 0})
        atomic_write_text(world / "classify" / f"{split}.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
        written[f"classify/{split}.jsonl"] = len(lines)
    return written
