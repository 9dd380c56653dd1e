"""Accuracy under input noise of the plain vs adversarially fine-tuned runs (docs/tasks-and-techniques.md).

    python benchmarks/robustness.py WORK_DIR > robustness.json

For every WORK_DIR/vqa-{plain,adv}-<seed>/best: the world's minival label score (= VQA
accuracy of the soft labels) clean, with Gaussian noise of std s x (feature std) added to
the raw region features, and with noise of relative size s added to the word embeddings
(before position/type, where the adversary works). Same noise draws for every model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from lxmert import LxmertForQuestionAnswering
from lxmert.data import VQADataset
from lxmert.text import AnswerTable, LxmertTokenizer

LEVELS = (0.0, 0.5, 1.0)


@torch.no_grad()
def score(model, batches, feat_noise: float, text_noise: float, feat_std: float) -> float:
    gen = torch.Generator().manual_seed(0)
    total, n = 0.0, 0
    word = model.lxmert.embeddings.word_embeddings
    emb_std = float(word.weight.std())
    for batch, soft in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        feats = inputs["visual_feats"]
        inputs["visual_feats"] = feats + feat_noise * feat_std * torch.randn(feats.shape, generator=gen)
        ids = inputs.pop("input_ids")
        emb = word(ids)
        noise = text_noise * emb_std * torch.randn(emb.shape, generator=gen)
        inputs["inputs_embeds"] = emb + noise * inputs["attention_mask"].unsqueeze(-1)
        pred = model(**inputs).question_answering_score.argmax(-1)
        total += float(soft[torch.arange(len(pred)), pred].sum())
        n += len(pred)
    return total / n


def main(work: str) -> None:
    work = Path(work)
    world = work / "world"
    torch.manual_seed(0)
    table = AnswerTable.from_file(world / "vqa" / "trainval_label2ans.json")
    ds = VQADataset(world / "vqa" / "minival.json", world / "features" / "store",
                    LxmertTokenizer.from_vocab(world / "vocab.txt"), table)
    batches = []
    for start in range(0, len(ds), 100):
        batch = ds.collate([ds[i] for i in range(start, min(start + 100, len(ds)))]).inputs
        batches.append((batch, batch["labels"]))
    feat_std = float(torch.cat([b["visual_feats"].flatten() for b, _ in batches]).std())
    out: dict[str, dict[str, float]] = {}
    for run in sorted(work.glob("vqa-*-*/best")):
        model = LxmertForQuestionAnswering.from_pretrained(run).eval()
        name = run.parent.name
        out[name] = {"clean": score(model, batches, 0.0, 0.0, feat_std)}
        for s in LEVELS[1:]:
            out[name][f"features+{s}std"] = score(model, batches, s, 0.0, feat_std)
            out[name][f"words+{s}std"] = score(model, batches, 0.0, s, feat_std)
        print(name, out[name], file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
