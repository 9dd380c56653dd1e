"""The one training loop: pre-training and fine-tuning both run through `Trainer.fit`.

What a task contributes is small (`lxmert.training.task.Task`): the model, the training
and validation datasets, the loss of a batch, and its validation metrics. Everything
else - batching over DDP ranks, gradient accumulation, clipping, AMP, the schedule, NaN
checks, logging, checkpoints, exact resume, clean stops on SIGTERM / SIGINT - lives here
once, in named phases: `setup` (checks, run directory, model, data, optimiser, resume),
`train_step` (one optimiser update), `evaluate` (validation, best/), `save_checkpoint`.
Extras (adversarial training, pruning masks) plug in through `TrainerHook`s.

Determinism, which exact resume and the 1-vs-N-process equivalence rely on:
- the order of examples is a function of (seed, epoch) only (`GlobalBatchSampler`; with
  `data.batching = "length"`, the default, also of the examples' lengths, which are data);
  a global batch of B examples is split over ranks and accumulation micro-batches, so the
  same examples form step t whatever the number of processes;
- datasets are pure functions of the index, or of (epoch, index) after `set_epoch`
  (pre-training's masks and negatives), so workers, ranks and resumes see the same items;
- the DataLoader gets its own generator, so creating one does not advance the global RNG;
- evaluation runs inside `preserved_rng()`, so it never shifts the training stream;
- a checkpoint stores the RNG states and the position in the epoch.

Nothing a user cannot redo is lost: the run directory is locked for the run and checked
before anything is written, every split is read before the first step, a checkpoint is
written before each scheduled evaluation (a resumed run redoes an evaluation that did not
finish), and SIGTERM or SIGINT stops the run at the next step boundary with a checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from lxmert.atomic import atomic_write_text
from lxmert.checkpoint.files import RECIPE_NAME, read_checkpoint
from lxmert.data.collate import move_to
from lxmert.errors import LxmertError, NonFiniteLossError
from lxmert.modeling import load_state
from lxmert.training.checkpointing import (
    CKPT_DIR,
    TrainerState,
    latest_checkpoint,
    load_trainer_state,
    save_checkpoint,
    write_model_dir,
)
from lxmert.training.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from lxmert.training.hooks import TrainerHook
from lxmert.training.metrics_log import MetricsWriter
from lxmert.training.optim import build_optimizer, build_scheduler
from lxmert.training.precision import autocast, check_amp
from lxmert.training.recipe import Recipe
from lxmert.training.rng import capture_rng, mix_seed, preserved_rng, restore_rng
from lxmert.training.sampler import GlobalBatchSampler, dataset_lengths, random_batching_reason
from lxmert.training.task import Task

__all__ = ["Trainer", "FitResult", "RunInterrupted", "RunDirectoryError", "NonFiniteLossError"]

BEST_DIR = "best"
EVAL_NAME = "eval.json"
LOCK_NAME = ".lock"


class RunInterrupted(LxmertError):
    """SIGTERM or SIGINT stopped the run; the message names the checkpoint to resume from."""

    def __init__(self, message: str, signum: int, checkpoint: str | None) -> None:
        super().__init__(message)
        self.signum = signum
        self.checkpoint = checkpoint


class RunDirectoryError(LxmertError, FileExistsError):
    """The run directory holds another run, or another process is using it."""


@dataclass
class FitResult:
    """What a finished run reports back (also written to RUN_DIR/result.json)."""

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


class _StopSignals:
    """SIGTERM (what schedulers send) and the first SIGINT request a clean stop at the next
    step boundary instead of killing the process; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():  # only it may install handlers
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker init: leave SIGTERM / SIGINT to the main process, which stops the
    run cleanly (a worker killed by the scheduler's SIGTERM would fail the run instead)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Trainer:
    """Runs `recipe` for `task` into `out_dir`; `resume=True` continues from `last`."""

    def __init__(
        self,
        recipe: Recipe,
        task: Task,
        out_dir: str | os.PathLike,
        resume: bool = False,
        dist_info: DistInfo | None = None,
        hooks: Sequence[TrainerHook] = (),
    ) -> None:
        self.recipe = recipe
        self.task = task
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.info = dist_info or init_distributed(recipe.train.device)
        self.hooks = list(hooks)
        self.metrics = MetricsWriter(self.out_dir / "metrics.jsonl", enabled=self.info.is_main)
        self._lock: Any = None
        self._created_dir = False

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 / fp16 autocast on CUDA, bf16 on CPU (lxmert.training.precision)."""
        return autocast(self.recipe.train.amp, self.info.device)

    def log(self, message: str) -> None:
        if self.info.is_main:
            from tqdm import tqdm

            tqdm.write(message)

    def _files(self) -> dict[str, str]:
        """Files each checkpoint carries: the task's (vocab) and the recipe, so that
        `lxmert evaluate --checkpoint DIR` knows the run's settings wherever DIR goes."""
        files = dict(self.task.checkpoint_files())
        files[RECIPE_NAME] = json.dumps(self.recipe.to_dict(), indent=2, sort_keys=True) + "\n"
        return files

    # ------------------------------------------------------------------ set-up
    def _claim_run_directory(self) -> None:
        """Lock the run directory and refuse another run's, before anything is written."""
        self._created_dir = not self.out_dir.exists()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self.out_dir / LOCK_NAME, "a+", encoding="utf-8")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "another process"
            lock.close()
            raise RunDirectoryError(f"{self.out_dir} is in use by {owner}; wait for it or choose another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        self._lock = lock
        if not self.resume:
            held = [name for name in ("last", CKPT_DIR, BEST_DIR) if (self.out_dir / name).exists()]
            if held:
                self._release()
                raise RunDirectoryError(
                    f"{self.out_dir} already holds a run ({', '.join(held)}); pass --resume to continue it "
                    f"or choose another --out")

    def _release(self) -> None:
        """Unlock; a run refused in set-up leaves no trace (no lock file, no directory it made)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                if [p.name for p in self.out_dir.iterdir()] == [LOCK_NAME]:
                    (self.out_dir / LOCK_NAME).unlink()
                    if self._created_dir:
                        self.out_dir.rmdir()
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def setup(self) -> None:
        """Everything before the first step; fails before writing anything it can check."""
        r, info, t = self.recipe, self.info, self.recipe.train
        check_amp(t.amp, info.device)  # fp16 on CPU is an error
        world, accum, batch = info.world_size, t.grad_accum, t.batch_size
        if batch % (world * accum):
            raise ValueError(f"train.batch_size {batch} must be divisible by world size {world} x "
                             f"train.grad_accum {accum}")
        if info.is_main:
            self._claim_run_directory()
        barrier()
        torch.manual_seed(t.seed % 2**32)  # the model's initialisation and dropout
        model = self.task.build_model().to(info.device)
        self.dataset = self.task.train_dataset()
        n = len(self.dataset)  # type: ignore[arg-type]
        self.steps_per_epoch = n // batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"training set has {n} examples, fewer than one batch of {batch}")
        self.valid = self.task.valid_dataset() if info.is_main else None
        self.select_best = self.task.main_metric is not None
        if info.is_main and self.select_best and self.valid is None:
            self.select_best = False
            self.log(f"warning: no validation split (data.valid is empty): no {BEST_DIR}/ is kept; the "
                     f"final weights are the last checkpoint")
        self.total = t.max_steps if t.max_steps is not None else t.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(
            model, r.optim.name, lr=r.optim.lr, weight_decay=r.optim.weight_decay, betas=tuple(r.optim.betas),
            eps=r.optim.eps, decay_norm_and_bias=r.optim.decay_norm_and_bias)
        self.scheduler = build_scheduler(self.optimizer, self.total, r.optim.warmup, r.optim.schedule)
        self.scaler = torch.amp.GradScaler("cuda") if t.amp == "fp16" and info.device.type == "cuda" else None
        self.state = TrainerState(extra={"global_batch": batch, "total_steps": self.total,
                                         "batching": r.data.batching})
        why = random_batching_reason(self.dataset) if r.data.batching == "length" else None
        if why is not None:
            inner = getattr(self.dataset, "dataset", self.dataset)
            self.log(f"note: data.batching = \"length\" draws the batches of {type(inner).__name__} at random: {why}")
        self.resumed_from = self._resume(model) if self.resume else None
        if self.resumed_from is None:
            if self.resume:
                self.log(f"--resume: no checkpoint in {self.out_dir}, starting fresh")
            self.metrics.reset()
        for hook in self.hooks:
            hook.on_setup(model, self.optimizer)
        if info.is_main:
            atomic_write_text(self.out_dir / RECIPE_NAME, json.dumps(r.to_dict(), indent=2, sort_keys=True) + "\n")
            self._log_start(model, n)
        self.raw_model = model  # evaluation and checkpoints use the plain module
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                        find_unused_parameters=self.task.ddp_find_unused_parameters())
        if t.compile:
            # after DDP, as torch recommends (its DDPOptimizer splits graphs at gradient buckets)
            model = torch.compile(model, backend=t.compile)
        self.model = model
        self.last_checkpoint = str(self.resumed_from) if self.resumed_from else None

    def _resume(self, model: nn.Module) -> Path | None:
        ckpt = latest_checkpoint(self.out_dir)
        if ckpt is None:
            return None
        saved = load_trainer_state(ckpt, map_location=self.info.device)
        load_state(model, read_checkpoint(ckpt, self.info.device).state, str(ckpt), strict=True)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        state = TrainerState.from_dict(saved["state"])
        batch = self.recipe.train.batch_size
        if state.extra.get("global_batch", batch) != batch:
            raise ValueError(f"{ckpt}: saved with global batch {state.extra['global_batch']}, now {batch}; the data "
                             f"position would not match (keep train.batch_size when resuming)")
        # checkpoints from before length-aware batching drew their batches at random
        saved_batching = state.extra.get("batching", "random")
        if saved_batching != self.recipe.data.batching:
            raise ValueError(f"{ckpt}: saved with data.batching = {saved_batching!r}, now "
                             f"{self.recipe.data.batching!r}; the data position would not match (resume with "
                             f"--set data.batching={saved_batching})")
        best = self.out_dir / BEST_DIR / EVAL_NAME
        if best.is_file() and self.task.main_metric is not None:
            # best/ is the truth about the best so far: it may be newer than the checkpoint
            # when the run stopped during or after the evaluation that followed it
            record = json.loads(best.read_text(encoding="utf-8"))
            state.best_metric, state.best_step = record.get(self.task.main_metric), record.get("step")
        restore_rng(saved["rng"])
        self.metrics.truncate_after(state.step)
        self.state = state
        self.log(f"resumed from {ckpt} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
        return ckpt

    def _log_start(self, model: nn.Module, n: int) -> None:
        """One summary of what the run is about to do, so a wrong split or table shows at once."""
        t = self.recipe.train
        parts = [f"task {self.task.name}: {n} training examples"]
        stats = getattr(self.dataset, "stats", None)
        if stats is not None and hasattr(stats, "summary"):
            parts.append(f"({stats.summary()})")
            if getattr(stats, "answers_dropped", 0):
                # answers outside the head's table train nothing: a wrong table learns nothing
                self.log(f"warning: {stats.answers_dropped} training label answers are not in the answer "
                         f"table ({len(getattr(self.task, 'answers', ()) or ())} answers) and are dropped: "
                         f"{stats.summary()}; check model.answers")
        if self.recipe.data.train_limit:
            parts.append(f"[data.train_limit keeps the first {self.recipe.data.train_limit}]")
        if self.valid is not None:
            parts.append(f"; {len(self.valid)} validation examples")  # type: ignore[arg-type]
        answers = getattr(self.task, "answers", None)
        if answers is not None:
            parts.append(f"; {len(answers)} answers")
        params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        self.log(" ".join(parts) + f"; model {type(model).__name__} {params / 1e6:.2f}M parameters; "
                 f"{self.total} steps of {t.batch_size} ({self.steps_per_epoch} per epoch) -> {self.out_dir}")

    # ------------------------------------------------------------------ one step
    def _micro_step(self, inputs: dict[str, Any], epoch: int, accum: int) -> dict[str, torch.Tensor]:
        """Forward + backward of one micro-batch; a hook may run it instead (adversarial)."""

        def loss_fn(model: nn.Module, batch_inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return self.task.loss(model, batch_inputs, epoch)

        def backward(loss: torch.Tensor) -> None:
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

        for hook in self.hooks:
            out = hook.micro_step(self.model, inputs, loss_fn, loss_scale=1.0 / accum, backward=backward,
                                  autocast=self._autocast)
            if out is not None:
                return out
        with self._autocast():
            loss, parts = loss_fn(self.model, inputs)
        backward(loss / accum)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}

    def train_step(self, batches: Iterator[Any], stop: _StopSignals) -> tuple[dict[str, float], float | None, bool]:
        """One optimiser update over `grad_accum` micro-batches: (mean losses over ranks,
        gradient norm, whether any rank was asked to stop)."""
        info, accum, epoch = self.info, self.recipe.train.grad_accum, self.state.epoch
        sums: dict[str, torch.Tensor] = {}
        for a in range(accum):
            inputs = move_to(next(batches).inputs, info.device, non_blocking=True)
            sync = self.model.no_sync() if info.enabled and a < accum - 1 else contextlib.nullcontext()  # type: ignore[operator]
            with sync:
                parts = self._micro_step(inputs, epoch, accum)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0) + v.float() / accum
        keys = sorted(sums)
        flag = torch.tensor(1.0 if stop.received is not None else 0.0, device=info.device)
        packed = all_reduce_sum(torch.stack([*(sums[k].reshape(()) for k in keys), flag]))
        values = dict(zip(keys, (packed[:-1] / info.world_size).tolist()))
        stopping = bool(packed[-1] > 0)
        if not math.isfinite(values["loss"]):
            bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
            raise NonFiniteLossError(
                f"non-finite loss at step {self.state.step + 1} (epoch {epoch}, batch "
                f"{self.state.batch_in_epoch}): {bad}; stopping. Last complete checkpoint: "
                f"{self.last_checkpoint or 'none'}. Lower optim.lr, check the data, or use amp=bf16/none.")
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if self.recipe.optim.max_grad_norm > 0:
            grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.optim.max_grad_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.batch_in_epoch += 1
        return values, grad_norm, stopping

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Rank 0 validates (RNG preserved), records metrics and keeps the best weights."""
        results: dict[str, float] = {}
        state, model = self.state, self.raw_model
        if self.info.is_main and self.valid is not None:
            with preserved_rng(), self._autocast():
                model.eval()
                try:
                    results = dict(self.task.validate(model, self.info.device))
                finally:
                    model.train()
            self.metrics.write({"split": "valid", "step": state.step, "epoch": state.epoch, **results})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in results.items() if isinstance(v, (int, float)) and "/" not in k)
            self.log(f"[eval] step {state.step} epoch {state.epoch}: {shown}")
            key = self.task.main_metric
            if self.select_best and key is not None:
                if key not in results:
                    raise KeyError(f"evaluation returned no {key!r} (got {sorted(results)})")
                value = float(results[key])
                if state.best_metric is None or value > state.best_metric:
                    state.best_metric, state.best_step = value, state.step
                    record = json.dumps({"step": state.step, "epoch": state.epoch, **results}, indent=2) + "\n"
                    write_model_dir(self.out_dir / BEST_DIR, model, {**self._files(), EVAL_NAME: record})
        barrier()
        return results

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> str | None:
        """Write checkpoints/step-N (weights, recipe, optimiser, schedule, RNG, position)."""
        path = None
        if self.info.is_main:
            payload = {
                "state": self.state.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": capture_rng(),
            }
            path = save_checkpoint(self.out_dir, self.raw_model, payload, self.state.step,
                                   keep_last=self.recipe.train.keep_last, extra_files=self._files())
        barrier()
        self.last_checkpoint = str(path) if path else self.last_checkpoint
        return self.last_checkpoint

    def _evaluation_pending(self) -> bool:
        """After a resume: the checkpoint's step was an evaluation point whose evaluation
        never finished (the checkpoint is written first)."""
        s, t = self.state, self.recipe.train
        scheduled = s.step > 0 and (s.batch_in_epoch == 0 or (t.eval_every > 0 and s.step % t.eval_every == 0)
                                    or s.step >= self.total)
        return scheduled and self.valid is not None and not self.metrics.has_record("valid", s.step)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> FitResult:
        try:
            with _StopSignals() as stop:
                return self._fit(stop)
        finally:
            self._release()

    def _fit(self, stop: _StopSignals) -> FitResult:
        self.setup()
        r, t, info, state = self.recipe, self.recipe.train, self.info, self.state
        batch, accum, world = t.batch_size, t.grad_accum, info.world_size
        progress = None
        if info.is_main and t.progress:
            from tqdm import tqdm

            progress = tqdm(total=self.total, initial=state.step, desc=self.task.name, dynamic_ncols=True)
        loader_gen = torch.Generator()
        started = time.time()
        last_eval: dict[str, float] = {}
        window: dict[str, float] = {}
        window_steps, window_start = 0, time.time()
        eval_done_at = ckpt_step = state.step if self.resumed_from else -1
        if self.resumed_from is not None:
            pending = torch.tensor(float(info.is_main and self._evaluation_pending()), device=info.device)
            if float(all_reduce_sum(pending)) > 0:  # every rank takes part (barrier)
                last_eval = self.evaluate()
        self.model.train()
        try:
            while state.step < self.total:
                epoch = state.epoch
                if hasattr(self.dataset, "set_epoch"):
                    self.dataset.set_epoch(epoch)
                lengths = dataset_lengths(self.dataset, epoch) if r.data.batching == "length" else None
                sampler = GlobalBatchSampler(len(self.dataset), batch, t.seed, epoch, info.rank, world, accum,  # type: ignore[arg-type]
                                             start_step=state.batch_in_epoch, lengths=lengths)
                loader_gen.manual_seed(mix_seed(t.seed, epoch, 0xD1CE))
                loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.task.collate,
                                    num_workers=r.data.num_workers, generator=loader_gen,
                                    pin_memory=info.device.type == "cuda",
                                    worker_init_fn=ignore_stop_signals if r.data.num_workers else None)
                batches = iter(loader)
                while state.batch_in_epoch < self.steps_per_epoch and state.step < self.total:
                    lr = self.optimizer.param_groups[0]["lr"]
                    values, grad_norm, stopping = self.train_step(batches, stop)
                    for k, v in values.items():
                        window[k] = window.get(k, 0.0) + v
                    window.setdefault("grad_norm", 0.0)
                    if grad_norm is not None:
                        window["grad_norm"] += grad_norm
                    window_steps += 1
                    if progress is not None:
                        progress.update(1)
                    if state.step % max(1, t.log_every) == 0 or state.step == self.total:
                        elapsed = max(time.time() - window_start, 1e-9)
                        record = {"split": "train", "step": state.step,
                                  "epoch": epoch + state.batch_in_epoch / self.steps_per_epoch,
                                  "lr": lr, "samples_per_s": window_steps * batch / elapsed}
                        record.update({k: v / window_steps for k, v in window.items()})
                        self.metrics.write(record)
                        if progress is not None:
                            progress.set_postfix(loss=f"{record['loss']:.4f}", sps=f"{record['samples_per_s']:.1f}")
                        window, window_steps, window_start = {}, 0, time.time()
                    epoch_end = state.batch_in_epoch >= self.steps_per_epoch
                    if epoch_end:
                        state.epoch += 1
                        state.batch_in_epoch = 0
                    wants_eval = epoch_end or (t.eval_every > 0 and state.step % t.eval_every == 0)
                    # a checkpoint precedes every evaluation: one that fails loses nothing
                    wants_ckpt = wants_eval or (t.save_every > 0 and state.step % t.save_every == 0)
                    if wants_ckpt or stopping:
                        self.save_checkpoint()
                        ckpt_step = state.step
                    if stopping:
                        raise self._interrupted(stop)
                    if wants_eval and eval_done_at != state.step:
                        last_eval = self.evaluate()
                        eval_done_at = state.step
                    if epoch_end:
                        break
        finally:
            if progress is not None:
                progress.close()
        if ckpt_step != state.step:
            self.save_checkpoint()
        if eval_done_at != state.step:
            last_eval = self.evaluate()
        best = self.out_dir / BEST_DIR
        return FitResult(
            steps=state.step,
            epochs_done=state.epoch + state.batch_in_epoch / self.steps_per_epoch,
            last_eval=last_eval,
            best_metric=state.best_metric,
            best_step=state.best_step,
            last_checkpoint=self.last_checkpoint,
            best_checkpoint=str(best) if best.is_dir() else None,
            train_seconds=time.time() - started,
        )

    def _interrupted(self, stop: _StopSignals) -> RunInterrupted:
        signum = stop.received if stop.received is not None else signal.SIGTERM
        name = signal.Signals(signum).name
        message = (f"{name} received: stopped after step {self.state.step} with checkpoint "
                   f"{self.last_checkpoint}; continue with the same command and --resume")
        self.log(message)
        return RunInterrupted(message, signum, self.last_checkpoint)
