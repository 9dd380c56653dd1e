"""`generate_world`: write a whole generated world in the release's file layouts.

Scenes come from `scenes`, their detections and features from `detector`, the sentences
from `language` and `nlvr2`; this module only seeds each of them (one named
`random.Random` per image and purpose, so that no image's draws depend on another's) and
writes the files. The seeds and the order of the draws are part of the world: the same
config gives byte-identical files.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from lxmert.data.karpathy import dataset_json, image_entry
from lxmert.data.synth.config import SynthConfig
from lxmert.data.synth.detector import FeatureFunction, detector_record
from lxmert.data.synth.language import (GQA_ANSWERS, GQA_TEMPLATES, VQA_ANSWERS, VQA_TEMPLATES, AnswerBalancer,
                                        annotate, answer_space, ask, caption, distinct_sentences,
                                        region_description, vqa_soft_label)
from lxmert.data.synth.layout import PICTURES_DIR, RETRIEVAL_FILE, SPLIT_FILES, SPLITS, scene_of
from lxmert.data.synth.nlvr2 import nlvr2_pairs
from lxmert.data.synth.render import render_scene
from lxmert.data.synth.scenes import Scene
from lxmert.features.build import build_store as build_feature_store
from lxmert.features.tsv import write_tsv
from lxmert.atomic import atomic_open, atomic_write_text

__all__ = ["WorldSummary", "generate_world", "PICTURE_SPLITS"]

#: `SynthConfig.pictures` -> the splits whose images are rendered
PICTURE_SPLITS: dict[str, tuple[str, ...]] = {"none": (), "test": ("test",), "all": SPLITS}


@dataclass
class WorldSummary:
    """What `generate_world` wrote: paths, counts and how long it took."""

    out_dir: str
    config: dict[str, Any]
    images: dict[str, int]
    files: dict[str, int] = field(default_factory=dict)  # path relative to out_dir -> entries
    seconds: float = 0.0
    store: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def generate_world(out_dir: str | Path, config: SynthConfig | None = None, *,
                   build_store: bool = False, store_dtype: str = "float32",
                   progress: bool = True, overwrite: bool = False) -> WorldSummary:
    """Write a complete generated world under `out_dir` (see `lxmert.data.synth`).

    Deterministic: the same config gives byte-identical files. With `build_store` the
    three TSV files are also imported into one memory-mapped store at
    `out_dir/features/store` (what the datasets read). Refuses to write into a directory
    that already holds a world unless `overwrite`.
    """
    cfg = config or SynthConfig()
    cfg.validate()
    out = Path(out_dir)
    if (out / "synth.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a generated world (synth.json); pass overwrite=True / --overwrite")
    start = time.perf_counter()
    sizes = cfg.split_sizes()
    features = FeatureFunction(cfg.feat_dim, cfg.feature_seed, cfg.feature_noise, cfg.feature_code)
    summary = WorldSummary(out_dir=str(out), config=asdict(cfg), images=dict(sizes))

    scenes: dict[str, list[Scene]] = {}
    for split_index, (split, n) in enumerate(sizes.items()):
        scenes[split] = [scene_of(cfg, split, i) for i in range(n)]
        nprng = np.random.default_rng([cfg.seed, 1, split_index])

        def records(split=split, nprng=nprng) -> Iterator[dict[str, Any]]:
            items = scenes[split]
            if progress:
                items = tqdm(items, desc=f"synth {split} features", unit="img", leave=False)
            for i, scene in enumerate(items):
                yield detector_record(scene, random.Random(f"detector:{cfg.seed}:{split}:{i}"), nprng, features,
                                      num_boxes=cfg.num_boxes, label_noise=cfg.detector_label_noise)

        rel = f"features/{split}_obj36.tsv"
        summary.files[rel] = write_tsv(out / rel, records())

    vqa_index = 0
    gqa_index = 0
    vqa_all: dict[str, list[dict]] = {}
    gqa_all: dict[str, list[dict]] = {}
    captions_of: dict[str, list[str]] = {}
    for split, scene_list in scenes.items():
        vqa_name, gqa_name, nlvr2_name, pretrain_name = SPLIT_FILES[split]
        vqa_entries: list[dict] = []
        gqa_entries: list[dict] = []
        pretrain_entries: list[dict] = []
        vqa_balance, gqa_balance = AnswerBalancer(), AnswerBalancer()
        for i, scene in enumerate(scene_list):
            rng = random.Random(f"text:{cfg.seed}:{split}:{i}")
            captions = distinct_sentences(caption, scene, rng, cfg.captions_per_image)
            captions_of[scene.img_id] = captions
            regions = distinct_sentences(region_description, scene, rng, cfg.vg_per_image)
            vqa_here = []
            for _ in range(cfg.vqa_per_image):
                picked = ask(VQA_TEMPLATES, scene, rng, vqa_balance)
                if picked is None:
                    continue
                (sent, answer_type, question_type), answer = picked
                raw = annotate(answer, answer_space(answer), rng, cfg.annotator_accuracy)
                vqa_index += 1
                entry = {
                    "answer_type": answer_type,
                    "img_id": scene.img_id,
                    "label": vqa_soft_label(raw),
                    "question_id": vqa_index,
                    "question_type": question_type,
                    "sent": sent,
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                for k, a in enumerate(raw)],
                    "multiple_choice_answer": Counter(raw).most_common(1)[0][0],
                }
                vqa_here.append(entry)
            gqa_here = []
            for _ in range(cfg.gqa_per_image):
                picked = ask(GQA_TEMPLATES, scene, rng, gqa_balance)
                if picked is None:
                    continue
                sent, answer = picked
                gqa_index += 1
                gqa_here.append({"img_id": scene.img_id, "label": {answer: 1.0},
                                 "question_id": f"{gqa_index:08d}", "sent": sent})
            vqa_entries.extend(vqa_here)
            gqa_entries.extend(gqa_here)
            if pretrain_name is not None:
                pretrain_entries.append({
                    "img_id": scene.img_id,
                    "labelf": {"vqa": [e["label"] for e in vqa_here], "gqa": [e["label"] for e in gqa_here]},
                    "sentf": {"mscoco": captions, "vg": regions, "vqa": [e["sent"] for e in vqa_here],
                              "gqa": [e["sent"] for e in gqa_here]},
                })
        vqa_all[vqa_name] = vqa_entries
        gqa_all[gqa_name] = gqa_entries
        _write_json(out / "vqa" / f"{vqa_name}.json", vqa_entries, summary, out)
        _write_json(out / "gqa" / f"{gqa_name}.json", gqa_entries, summary, out)
        if pretrain_name is not None:
            _write_json(out / "lxmert" / f"{pretrain_name}.json", pretrain_entries, summary, out)
        nlvr2 = nlvr2_pairs(scene_list, nlvr2_name, random.Random(f"nlvr2:{cfg.seed}:{split}"),
                            per_image=cfg.nlvr2_per_image, pairs_per_sentence=cfg.nlvr2_pairs_per_sentence,
                            kinds=cfg.nlvr2_kinds)
        _write_json(out / "nlvr2" / f"{nlvr2_name}.json", nlvr2, summary, out)

    # The answer tables: every answer a template or an annotator can produce (the fixed
    # answer spaces), plus, as a safety net, any answer the labels actually carry, so that
    # no loader ever drops a label of the world's own questions.
    tables = {
        "vqa": set(VQA_ANSWERS) | {a for entries in vqa_all.values() for e in entries for a in e["label"]},
        "gqa": set(GQA_ANSWERS) | {a for entries in gqa_all.values() for e in entries for a in e["label"]},
    }
    for name, answers in tables.items():
        ordered = sorted(answers)
        _write_json(out / name / "trainval_ans2label.json", {a: k for k, a in enumerate(ordered)}, summary, out)
        _write_json(out / name / "trainval_label2ans.json", ordered, summary, out)
    dsets: dict[str, list[str]] = defaultdict(list)
    for name, answers in tables.items():
        for a in sorted(answers):
            dsets[a].append(name)
    _write_json(out / "lxmert" / "all_ans.json", [{"ans": a, "dsets": dsets[a]} for a in sorted(dsets)], summary, out)

    _write_retrieval(out, scenes, captions_of, summary)
    _write_pictures(out, [s for split in PICTURE_SPLITS[cfg.pictures] for s in scenes[split]], summary, progress)

    from lxmert.text import packaged_vocab_path  # lxmert.text imports torch: only load it here

    (out).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(packaged_vocab_path(), out / "vocab.txt.tmp")
    (out / "vocab.txt.tmp").replace(out / "vocab.txt")

    if build_store:
        store_dir = out / "features" / "store"
        if store_dir.exists():
            shutil.rmtree(store_dir)
        build_feature_store([out / f"features/{s}_obj36.tsv" for s in sizes], store_dir, dtype=store_dtype,
                            progress=progress)
        summary.store = str(store_dir)
    summary.seconds = round(time.perf_counter() - start, 3)
    atomic_write_text(out / "synth.json", summary.to_json() + "\n")
    return summary


def _write_json(path: Path, data: Any, summary: WorldSummary, root: Path) -> None:
    atomic_write_text(path, json.dumps(data, separators=(",", ":")) + "\n")
    summary.files[str(path.relative_to(root))] = len(data)


def _write_retrieval(out: Path, scenes: dict[str, list[Scene]], captions_of: dict[str, list[str]],
                     summary: WorldSummary) -> None:
    """The captions as a Karpathy-split file: the world's splits, `filename` = <img_id>.png.

    The captions are exactly the pre-training "mscoco" captions of train and val images
    (test images' captions appear nowhere else), `filepath` names the folder of the
    pictures where a world has them.
    """
    images = []
    sentid = 0
    for split, scene_list in scenes.items():
        for scene in scene_list:
            captions = captions_of[scene.img_id]
            images.append(image_entry(f"{scene.img_id}.png", len(images), split, captions, sentid,
                                      filepath=PICTURES_DIR))
            sentid += len(captions)
    path = out / RETRIEVAL_FILE
    atomic_write_text(path, json.dumps(dataset_json("world", images), separators=(",", ":")) + "\n")
    summary.files[RETRIEVAL_FILE] = len(images)


def _write_pictures(out: Path, scenes: list[Scene], summary: WorldSummary, progress: bool) -> None:
    """`scenes` rendered to PICTURES_DIR/<img_id>.png (each written atomically)."""
    if not scenes:
        return
    items: Any = scenes
    if progress:
        items = tqdm(scenes, desc="synth pictures", unit="img", leave=False)
    for scene in items:
        with atomic_open(out / PICTURES_DIR / f"{scene.img_id}.png", "wb") as handle:
            render_scene(scene).save(handle, format="PNG")
    summary.files[f"{PICTURES_DIR}/*.png"] = len(scenes)
