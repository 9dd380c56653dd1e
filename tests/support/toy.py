"""A tiny VQA-like task on random tensors, used by the training-loop tests.

The label (one of 4) is written into the object features (coordinate `label` raised by 2),
a rule the model learns in a few dozen steps; the question ids are noise. Kept separate from the data
layer so that the loop's own guarantees are tested in isolation.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from lxmert import LxmertConfig, LxmertForQuestionAnswering
from lxmert.data.collate import Batch
from lxmert.training.rng import mix_seed

#: the recipes' default train.seed (the toy's noise is drawn as the loop once drew it for it)
TRAIN_SEED = 9595


def tiny_config(**overrides) -> LxmertConfig:
    base = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=1,
                x_layers=1, r_layers=1, visual_feat_dim=16, num_qa_labels=4, vocab_size=120,
                num_object_labels=10, num_attr_labels=5, max_position_embeddings=32,
                hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    base.update(overrides)
    return LxmertConfig(**base)


class ToyQA(Dataset):
    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.feats = torch.randn(n, 4, 16, generator=g)
        self.pos = torch.rand(n, 4, 4, generator=g)
        self.ids = torch.randint(104, 120, (n, 6), generator=g)
        self.labels = torch.randint(0, 4, (n,), generator=g)
        self.feats[torch.arange(n), :, self.labels] += 2.0  # the answer is written in the image

        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        # a little per-item randomness, as masking would have: a function of (epoch, index), as
        # the loop requires of datasets (workers, ranks and resumes see the same items)
        noise = torch.randn(4, 16, generator=torch.Generator().manual_seed(mix_seed(TRAIN_SEED, self.epoch, i))) * 0.01
        return self.ids[i], self.feats[i] + noise, self.pos[i], self.labels[i]


class ToyAdapter:
    """Duck-types `lxmert.training.task.Task`: what the loop calls, nothing more."""

    name = "vqa"
    main_metric = "accuracy"

    def __init__(self, n_train: int = 64, n_valid: int = 64, nan_at: int | None = None,
                 crash_at: int | None = None, **cfg) -> None:
        self.cfg = tiny_config(**cfg)
        self.train = ToyQA(n_train, seed=1)
        self.valid = ToyQA(n_valid, seed=2)
        self.nan_at = nan_at
        self.crash_at = crash_at
        self.calls = 0

    def build_model(self):
        return LxmertForQuestionAnswering(self.cfg, answers=["a", "b", "c", "d"])

    def train_dataset(self):
        return self.train

    def valid_dataset(self):
        return self.valid

    def ddp_find_unused_parameters(self):
        return True  # a QA head: the last cross layer's object branch feeds no loss

    def collate(self, items):
        ids, feats, pos, labels = map(torch.stack, zip(*items))
        ids = torch.cat([torch.full((len(ids), 1), 101), ids, torch.full((len(ids), 1), 102)], 1)
        return Batch({"input_ids": ids, "attention_mask": torch.ones_like(ids), "visual_feats": feats,
                      "visual_pos": pos, "labels": labels}, {})

    def loss(self, model, batch, epoch):
        self.calls += 1
        if self.crash_at is not None and self.calls >= self.crash_at:
            raise KeyboardInterrupt("simulated crash")
        out = model(**batch)
        loss = out.loss
        if self.nan_at is not None and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return loss, {"qa": out.loss.detach()}

    @torch.no_grad()
    def validate(self, model, device):
        batch = self.collate([self.valid[i] for i in range(len(self.valid))]).inputs
        logits = model(**{k: v.to(device) for k, v in batch.items() if k != "labels"}).question_answering_score
        acc = (logits.argmax(-1).cpu() == batch["labels"]).float().mean().item()
        return {"accuracy": acc}

    def checkpoint_files(self):
        return {}
