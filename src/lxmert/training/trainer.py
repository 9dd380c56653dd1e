"""The one training loop: pre-training and fine-tuning both run through `Trainer.fit`.

What a task contributes is small (`TaskAdapter`): how to build the model, the training
dataset and collate function, the loss of a batch, and an evaluation. Everything else -
batching over DDP ranks, gradient accumulation, clipping, AMP, the schedule, NaN checks,
logging, checkpoints and exact resume - lives here once.

Determinism, which exact resume and the 1-vs-N-process equivalence rely on:
- the order of examples is a function of (seed, epoch) only (`GlobalBatchSampler`); a
  global batch of B examples is split over ranks and accumulation micro-batches, so the
  same examples form step t whatever the number of processes;
- per-example randomness (masking, negative sampling) is a function of (seed, epoch,
  index) - datasets with `set_epoch` promise it, others are wrapped in `SeededDataset` -
  so it does not depend on rank, worker or whether the run resumed;
- the DataLoader gets its own generator, so creating one does not advance the global RNG;
- evaluation runs inside `preserved_rng()`, so it never shifts the training stream;
- a checkpoint stores the global RNG states and the position in the epoch.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from lxmert.techniques.adversarial import adversarial_step
from lxmert.training.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from lxmert.training.metrics import MetricsWriter
from lxmert.training.optim import build_optimizer, build_scheduler
from lxmert.training.precision import autocast, check_amp
from lxmert.training.recipe import Recipe
from lxmert.training.state import (
    TrainerState,
    capture_rng,
    latest_checkpoint,
    load_trainer_state,
    replace_dir,
    restore_rng,
    save_checkpoint,
)

__all__ = [
    "TaskAdapter",
    "Trainer",
    "FitResult",
    "GlobalBatchSampler",
    "SeededDataset",
    "preserved_rng",
    "NonFiniteLossError",
    "move_batch",
]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the step and the last checkpoint."""


class TaskAdapter(Protocol):
    """What the loop needs from a task (pre-training, VQA, GQA, NLVR2, ...)."""

    task: str
    #: key of `evaluate()` that selects the best checkpoint (higher is better); None = no best/
    main_metric: str | None

    def build_model(self) -> nn.Module: ...

    def train_dataset(self) -> Dataset: ...

    def collate(self, items: list[Any]) -> dict[str, Any]: ...

    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]: ...

    def checkpoint_files(self) -> dict[str, str]: ...


def move_batch(batch: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts, lists and tuples) to `device`; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(move_batch(v, device) for v in batch)
    if isinstance(batch, list) and batch and isinstance(batch[0], torch.Tensor):
        return [move_batch(v, device) for v in batch]
    return batch


@contextlib.contextmanager
def preserved_rng(seed: int | None = None) -> Iterator[None]:
    """Run a block with its own RNG (seeded when `seed` is given); restore all streams after."""
    saved = capture_rng()
    try:
        if seed is not None:
            _seed_all(seed)
        yield
    finally:
        restore_rng(saved)


def _seed_all(seed: int) -> None:
    seed %= 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _mix(*values: int) -> int:
    """A stable 63-bit mix of integers (splitmix64 steps); seeds for (seed, epoch, index)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class SeededDataset(Dataset):
    """Seeds torch / numpy / random from (seed, epoch, index) around each `dataset[index]`.

    For datasets that draw random choices from the global generators: those choices then
    depend on the example and epoch only - not on the rank, the worker, or on how many
    batches this process drew before - which is what makes a resumed run and an N-process
    run see the same examples as one uninterrupted process. The torch stream (dropout) is
    restored after each item; numpy's and Python's are simply left re-seeded (restoring
    them costs ~150 us per item, and what they hold afterwards is still a function of
    the data order, hence reproducible). Datasets with `set_epoch` declare that their
    randomness is already a function of (seed, epoch, index) and are not wrapped.
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        seed = _mix(self.seed, self.epoch, index)
        saved = torch.default_generator.get_state()
        torch.default_generator.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            return self.dataset[index]
        finally:
            torch.default_generator.set_state(saved)


class GlobalBatchSampler(Sampler[list[int]]):
    """Micro-batches of this rank for one epoch; step t uses the same examples for any world.

    The epoch's order is `randperm(n)` from a generator seeded by (seed, epoch). Global
    step t takes positions [t*B, (t+1)*B); rank r keeps every world-th of them (offset r)
    and cuts its share into `grad_accum` micro-batches. The incomplete last global batch is
    dropped (every rank must do the same number of steps). `start_step` skips the steps a
    resumed run has already done without loading them.
    """

    def __init__(
        self,
        num_examples: int,
        global_batch: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        start_step: int = 0,
        shuffle: bool = True,
    ) -> None:
        if global_batch % (world_size * grad_accum):
            raise ValueError(
                f"global batch {global_batch} is not divisible by world_size {world_size} x "
                f"grad_accum {grad_accum}"
            )
        self.n = num_examples
        self.batch = global_batch
        self.seed, self.epoch = seed, epoch
        self.rank, self.world, self.accum = rank, world_size, grad_accum
        self.start_step = start_step
        self.shuffle = shuffle

    @property
    def steps(self) -> int:
        return self.n // self.batch

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.accum

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(_mix(self.seed, self.epoch, 0x5EED))
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = list(range(self.n))
        micro = self.batch // (self.world * self.accum)
        for step in range(self.start_step, self.steps):
            chunk = order[step * self.batch:(step + 1) * self.batch][self.rank::self.world]
            for a in range(self.accum):
                yield chunk[a * micro:(a + 1) * micro]


@dataclass
class FitResult:
    """What a finished run reports back (also written to RUN_DIR/result.json by the CLI)."""

    steps: int
    epochs_done: float
    last_eval: dict[str, float]
    best_metric: float | None
    best_step: int | None
    last_checkpoint: str | None
    best_checkpoint: str | None
    train_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Trainer:
    """Runs `recipe` for `adapter` into `out_dir`; `resume=True` continues from `last`."""

    def __init__(
        self,
        recipe: Recipe,
        adapter: TaskAdapter,
        out_dir: str | Path,
        resume: bool = False,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.recipe = recipe
        self.adapter = adapter
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.info = dist_info or init_distributed(recipe.train.device)
        self.metrics = MetricsWriter(self.out_dir / "metrics.jsonl", enabled=self.info.is_main)

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 / fp16 autocast on CUDA, bf16 on CPU (lxmert.training.precision)."""
        return autocast(self.recipe.train.amp, self.info.device)

    def _log(self, message: str) -> None:
        if self.info.is_main:
            from tqdm import tqdm

            tqdm.write(message)

    def _evaluate(self, model: nn.Module, state: TrainerState) -> dict[str, float]:
        """Rank 0 evaluates (RNG preserved), records metrics and keeps the best weights."""
        results: dict[str, float] = {}
        if self.info.is_main:
            with preserved_rng(self.recipe.train.seed), self._autocast():
                model.eval()
                results = dict(self.adapter.evaluate(model, self.info.device))
                model.train()
            record = {"split": "valid", "step": state.step, "epoch": state.epoch, **results}
            self.metrics.write(record)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in results.items()
                              if isinstance(v, (int, float)) and "/" not in k)
            self._log(f"[eval] step {state.step} epoch {state.epoch}: {shown}")
            key = self.adapter.main_metric
            if key is not None:
                if key not in results:
                    raise KeyError(f"evaluation returned no {key!r} (got {sorted(results)})")
                value = float(results[key])
                if state.best_metric is None or value > state.best_metric:
                    state.best_metric, state.best_step = value, state.step
                    self._save_best(model, state, results)
        barrier()
        return results

    def _save_best(self, model: nn.Module, state: TrainerState, results: dict[str, float]) -> None:
        import json

        final = self.out_dir / "best"
        tmp = self.out_dir / ".best.tmp"
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)  # type: ignore[operator]
        for name, text in self.adapter.checkpoint_files().items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "eval.json").write_text(
            json.dumps({"step": state.step, "epoch": state.epoch, **results}, indent=2) + "\n"
        )
        replace_dir(tmp, final)

    def _checkpoint(self, model, optimizer, scheduler, scaler, state: TrainerState) -> str | None:
        path = None
        if self.info.is_main:
            payload = {
                "state": state.to_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": capture_rng(),
            }
            path = save_checkpoint(
                self.out_dir, model, payload, state.step, keep_last=self.recipe.train.keep_last,
                extra_files=self.adapter.checkpoint_files(),
            )
        barrier()
        return str(path) if path else None

    # ------------------------------------------------------------------ main
    def fit(self) -> FitResult:
        r, info = self.recipe, self.info
        t = r.train
        check_amp(t.amp, info.device)  # before anything is written: fp16 on CPU is an error
        _seed_all(t.seed)
        if info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            r.save(self.out_dir / "config.json")
        model = self.adapter.build_model().to(info.device)
        adv = r.adv.to_config()  # adversarial fine-tuning (lxmert.techniques.adversarial), None = off
        dataset = self.adapter.train_dataset()
        n = len(dataset)  # type: ignore[arg-type]
        world, accum, batch = info.world_size, t.grad_accum, t.batch_size
        if batch % (world * accum):
            raise ValueError(
                f"train.batch_size {batch} must be divisible by world size {world} x "
                f"train.grad_accum {accum}"
            )
        steps_per_epoch = n // batch
        if steps_per_epoch == 0:
            raise ValueError(f"training set has {n} examples, fewer than one batch of {batch}")
        total = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
        optimizer = build_optimizer(
            model, r.optim.name, lr=r.optim.lr, weight_decay=r.optim.weight_decay,
            betas=tuple(r.optim.betas), eps=r.optim.eps,
            decay_norm_and_bias=r.optim.decay_norm_and_bias,
        )
        scheduler = build_scheduler(optimizer, total, r.optim.warmup, r.optim.schedule)
        if t.keep_sparsity:  # retraining a pruned checkpoint (lxmert prune): its zeros stay zero
            from lxmert.techniques.pruning import masks_from_zeros

            # encoder only: a remapped answer head has all-zero rows for new answers that must train
            masks_from_zeros(model, keep_head=True).attach(optimizer)
        use_scaler = t.amp == "fp16" and info.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None

        state = TrainerState(extra={"global_batch": batch, "total_steps": total})
        resumed_from = None
        if not self.resume and latest_checkpoint(self.out_dir) is not None:
            raise FileExistsError(
                f"{self.out_dir} already holds a run (see {self.out_dir / 'last'}); pass --resume to "
                f"continue it or choose another --out"
            )
        if self.resume:
            ckpt = latest_checkpoint(self.out_dir)
            if ckpt is not None:
                resumed_from = ckpt
                saved = load_trainer_state(ckpt, map_location=info.device)
                self._load_weights(model, ckpt)
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
                if scaler is not None and saved.get("scaler"):
                    scaler.load_state_dict(saved["scaler"])
                state = TrainerState.from_dict(saved["state"])
                if state.extra.get("global_batch", batch) != batch:
                    raise ValueError(
                        f"{ckpt}: saved with global batch {state.extra['global_batch']}, now {batch}; "
                        f"the data position would not match (keep train.batch_size when resuming)"
                    )
                rng = saved["rng"]
                rng["torch"] = rng["torch"].cpu()
                restore_rng(rng)
                self.metrics.truncate_after(state.step)
                self._log(f"resumed from {ckpt} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
            else:
                self._log(f"--resume: no checkpoint in {self.out_dir}, starting fresh")
        if resumed_from is None:
            self.metrics.reset()

        raw_model = model
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(
                model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if t.compile:
            # after DDP, as torch recommends (its DDPOptimizer splits graphs at gradient buckets);
            # `raw_model` stays the eager module for evaluation and checkpoints
            model = torch.compile(model, backend=t.compile)

        progress = None
        if info.is_main and t.progress:
            from tqdm import tqdm

            progress = tqdm(total=total, initial=state.step, desc=f"{r.task}", dynamic_ncols=True)
        loader_gen = torch.Generator()
        started = time.time()
        last_eval: dict[str, float] = {}
        window: dict[str, float] = {}
        window_steps, window_start = 0, time.time()
        eval_done_at = -1
        last_ckpt: str | None = str(resumed_from) if resumed_from else None
        ckpt_step = state.step if resumed_from else -1  # known on every rank (barriers!)
        model.train()

        while state.step < total:
            epoch = state.epoch
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            sampler = GlobalBatchSampler(
                n, batch, t.seed, epoch, info.rank, world, accum, start_step=state.batch_in_epoch
            )
            loader_gen.manual_seed(_mix(t.seed, epoch, 0xD1CE))
            view = dataset if hasattr(dataset, "set_epoch") else SeededDataset(dataset, t.seed, epoch)
            loader = DataLoader(
                view, batch_sampler=sampler,
                collate_fn=self.adapter.collate, num_workers=r.data.num_workers,
                generator=loader_gen, pin_memory=info.device.type == "cuda",
            )
            batches = iter(loader)
            while state.batch_in_epoch < steps_per_epoch and state.step < total:
                sums: dict[str, torch.Tensor] = {}
                for a in range(accum):
                    mb = move_batch(next(batches), info.device)
                    sync = contextlib.nullcontext()
                    if info.enabled and a < accum - 1:
                        sync = model.no_sync()  # type: ignore[operator]
                    with sync:
                        if adv is not None:  # VILLA-style: does its own (1 + K x modalities) backwards
                            parts = adversarial_step(
                                model, mb, lambda m, b: self.adapter.loss(m, b, epoch), adv,
                                loss_scale=1.0 / accum, autocast=self._autocast,
                                backward=lambda t: (scaler.scale(t) if scaler is not None else t).backward())
                            loss = parts.pop("loss")
                        else:
                            with self._autocast():
                                loss, parts = self.adapter.loss(model, mb, epoch)
                            scaled = loss / accum
                            (scaler.scale(scaled) if scaler is not None else scaled).backward()
                    sums["loss"] = sums.get("loss", 0) + loss.detach().float() / accum
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0) + v.detach().float() / accum
                keys = sorted(sums)
                packed = all_reduce_sum(torch.stack([sums[k].reshape(()) for k in keys])) / world
                values = dict(zip(keys, packed.tolist()))
                if not math.isfinite(values["loss"]):
                    bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
                    raise NonFiniteLossError(
                        f"non-finite loss at step {state.step + 1} (epoch {epoch}, batch "
                        f"{state.batch_in_epoch}): {bad}; stopping. Last complete checkpoint: "
                        f"{last_ckpt or 'none'}. Lower optim.lr, check the data, or use amp=bf16/none."
                    )
                if scaler is not None:
                    scaler.unscale_(optimizer)
                grad_norm = None
                if r.optim.max_grad_norm > 0:
                    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), r.optim.max_grad_norm)
                lr = optimizer.param_groups[0]["lr"]
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.batch_in_epoch += 1

                for k, v in values.items():
                    window[k] = window.get(k, 0.0) + v
                window.setdefault("grad_norm", 0.0)
                if grad_norm is not None:
                    window["grad_norm"] += float(grad_norm)
                window_steps += 1
                if progress is not None:
                    progress.update(1)
                if state.step % max(1, t.log_every) == 0 or state.step == total:
                    elapsed = max(time.time() - window_start, 1e-9)
                    record = {"split": "train", "step": state.step,
                              "epoch": epoch + state.batch_in_epoch / steps_per_epoch,
                              "lr": lr, "samples_per_s": window_steps * batch / elapsed}
                    record.update({k: v / window_steps for k, v in window.items()})
                    self.metrics.write(record)
                    if progress is not None:
                        progress.set_postfix(loss=f"{record['loss']:.4f}", sps=f"{record['samples_per_s']:.1f}")
                    window, window_steps, window_start = {}, 0, time.time()
                if t.eval_every > 0 and state.step % t.eval_every == 0:
                    last_eval = self._evaluate(raw_model, state)
                    eval_done_at = state.step
                if t.save_every > 0 and state.step % t.save_every == 0:
                    last_ckpt = self._checkpoint(raw_model, optimizer, scheduler, scaler, state)
                    ckpt_step = state.step
            if state.batch_in_epoch >= steps_per_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
                if eval_done_at != state.step:
                    last_eval = self._evaluate(raw_model, state)
                    eval_done_at = state.step
                last_ckpt = self._checkpoint(raw_model, optimizer, scheduler, scaler, state)
                ckpt_step = state.step
        if progress is not None:
            progress.close()
        if eval_done_at != state.step:
            last_eval = self._evaluate(raw_model, state)
        if ckpt_step != state.step:
            last_ckpt = self._checkpoint(raw_model, optimizer, scheduler, scaler, state)
        best = self.out_dir / "best"
        return FitResult(
            steps=state.step,
            epochs_done=state.epoch + state.batch_in_epoch / steps_per_epoch,
            last_eval=last_eval,
            best_metric=state.best_metric,
            best_step=state.best_step,
            last_checkpoint=last_ckpt,
            best_checkpoint=str(best) if best.is_dir() else None,
            train_seconds=time.time() - started,
        )

    @staticmethod
    def _load_weights(model: nn.Module, checkpoint: Path) -> None:
        """Load a checkpoint's weights into the already built model (strict)."""
        loaded = type(model).from_pretrained(checkpoint)  # type: ignore[attr-defined]
        model.load_state_dict(loaded.state_dict(), strict=True)
