"""The training loop: a student learns from labels and, if given, a frozen teacher.

One loop serves teacher fine-tuning (method ``ce``, no teacher) and every distillation method.
It takes what it uses: training settings, a loss spec (the recipe's method section), the data,
the model, an accelerator (its device and precision), and optionally what the teacher teaches.
Accelerate owns devices, bf16 autocast, gradient accumulation and multi-GPU (``accelerate
launch`` needs no code change); this module owns the order of batches, the teacher-output cache,
checkpoints, evaluation each epoch and the best checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from . import losses
from .data import (Batch, Collator, batches, by_length, epoch_order, num_batches, text_keys,
                   text_lengths)
from .errors import Interrupted
from .files import write_with
from .heads import LayerOutputs, WithPseudoClassifiers
from .layer_plan import LayerPlan
from .methods import HIDDEN_TERMS
from .recipe import MethodConfig, TrainingConfig
from .run_folder import RunFolder
from .tasks import TaskSpec, compute_metrics, selection_score


STATUS_EVERY_S = 2.0
LOSS_EVERY = 50       # steps between reads of the loss off the device (each read is a sync)
# On CUDA, processes that collate the next batches while the GPU trains. On an H100 machine's
# CPU, padding a batch of 256 SST-2 texts took 29 ms, as long as a MiniLM step: one would stall it.
LOADER_WORKERS = 4


def device_type() -> str:
    """The kind of device a run here trains on: "cuda" or "cpu" (what Accelerate picks)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def native_bf16() -> bool:
    """Whether bf16 matrix products run in hardware here: CUDA, or a CPU with AVX512-BF16 or AMX.

    On such a CPU bf16 autocast made the default run's student steps 1.7x faster (SST-2 dev
    accuracy 83.60 vs 83.49 in fp32, seed 42); elsewhere it would be emulated, and slower.
    """
    if torch.cuda.is_available():
        return True
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def keep_freed_memory() -> None:
    """Have glibc keep freed memory in the process for reuse, not hand big blocks back.

    glibc serves each allocation over 32 MB with a fresh mmap and unmaps it when freed, so on a
    CPU every training step page-faulted its embedding gradient in anew (MiniLM's 30,522 x 384
    floats, 47 MB): 9 ms of the default student's 64 ms step. Served from the heap and reused,
    student steps ran 1.3x faster here and the teacher's 1.1x. PyTorch's CPU allocator keeps no
    cache of its own; PyTorch's CPU tuning guide preloads jemalloc or tcmalloc instead, which pip
    cannot install and a running process cannot switch to. Elsewhere than glibc this does nothing.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # from the C library this process runs on
    except (AttributeError, OSError, TypeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
    mallopt(M_MMAP_MAX, 0)              # no mmap per allocation: all from the heap
    mallopt(M_TRIM_THRESHOLD, 1 << 30)  # and give its top back only above 1 GiB free


def no_cudnn_attention() -> None:
    """Keep PyTorch's SDPA off its cuDNN kernel for this process (the flash and memory-efficient
    kernels remain). On an H100, cuDNN builds an attention graph for every new shape, and
    batches padded to their longest text bring a new length every few steps: on all of SST-2 at
    batch 256, the attention call took 29% of the MiniLM teacher's fine-tune (about 7 ms per
    call, against 0.16 ms once its shapes were seen) and autograd's backward another 26%."""
    torch.backends.cuda.enable_cudnn_sdp(False)


def make_accelerator(training: TrainingConfig) -> Accelerator:
    """The device, precision and gradient accumulation of ``training``: built once per run."""
    if torch.cuda.is_available():
        no_cudnn_attention()
    else:
        keep_freed_memory()
    precision = training.precision
    if precision == "auto":
        precision = "bf16" if native_bf16() else "fp32"
    return Accelerator(mixed_precision="bf16" if precision == "bf16" else "no",
                       gradient_accumulation_steps=training.grad_accum)


@dataclass
class KnownOutputs:
    """The frozen teacher's outputs on training examples it has already read (stage 1 reads
    them to train its pseudo classifiers), keyed by each example's texts (data.text_keys)."""

    keys: torch.Tensor     # (n,) int64
    logits: torch.Tensor   # (n, labels)
    pseudo: torch.Tensor   # (n, layers, labels)

    def save(self, path: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.__dict__.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> "KnownOutputs | None":
        return cls(**load_file(str(path))) if path.is_file() else None


class TeacherCache:
    """The frozen teacher's final and pseudo logits per training example, filled on first sight.

    UKD works in the output space, so an example costs (layers + 1) x labels floats: tiny next to
    the hidden states that PKD or ALP-KD would need (those methods run the teacher every step).
    """

    def __init__(self, size: int, layers: int, labels: int, device: torch.device):
        self.device = device
        self.logits = torch.zeros(size, labels, device=device)
        self.pseudo = torch.zeros(size, layers, labels, device=device)
        self.filled = torch.zeros(size, dtype=torch.bool)  # on the CPU: a lookup needs no sync

    def get(self, idx: torch.Tensor) -> LayerOutputs | None:
        """The cached outputs of examples ``idx`` (a CPU tensor), or None if any is missing."""
        if not bool(self.filled[idx].all()):
            return None
        rows = idx.to(self.device, non_blocking=True)
        return LayerOutputs(self.logits[rows], None, self.pseudo[rows])

    def put(self, idx: torch.Tensor, out: LayerOutputs) -> None:
        """Store outputs of examples ``idx`` (a CPU tensor); the outputs may be on any device."""
        rows = idx.to(self.device, non_blocking=True)
        self.logits[rows] = out.logits.float().to(self.device)
        self.pseudo[rows] = out.pseudo_logits.float().to(self.device)
        self.filled[idx] = True

    def prefill(self, keys: torch.Tensor, known: KnownOutputs) -> int:
        """Fill the examples whose keys (one per example, in cache order) ``known`` has; returns
        how many. The first epoch then skips the teacher's pass over them: on the default CPU
        run, 7 s of the student's 120."""
        where = {key: row for row, key in enumerate(known.keys.tolist())}
        pairs = [(i, where[key]) for i, key in enumerate(keys.tolist()) if key in where]
        if pairs:
            idx, rows = torch.tensor(pairs).T
            self.put(idx, LayerOutputs(known.logits[rows], None, known.pseudo[rows]))
        return len(pairs)


@dataclass
class Progress:
    """Where training stands; saved with every checkpoint."""

    epoch: int = 0
    batch: int = 0           # first batch of ``epoch`` not yet folded into an optimizer step
    step: int = 0
    best_metric: float = -math.inf
    best_step: int = 0
    history: list[dict] = field(default_factory=list)   # per epoch: step and eval metrics
    losses: list[float] = field(default_factory=list)   # per optimizer step


def predict(model: nn.Module, split: datasets.Dataset, collate: Collator, batch_size: int,
            device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Final logits and labels of a model (a backbone or a wrapper) over a split, in its order
    (computed shortest examples first: least padding)."""
    model.eval()
    out, labels = [], []
    order = by_length(split)
    with torch.no_grad():
        for batch in batches(split, collate, batch_size, order):
            batch = batch.to(device)
            out.append(model(**batch.student_inputs).logits.float().cpu())
            labels.append(batch.labels.cpu())
    restore = order.argsort()
    return torch.cat(out)[restore].numpy(), torch.cat(labels)[restore].numpy()


def evaluate(model: nn.Module, splits: dict[str, datasets.Dataset], spec: TaskSpec,
             collate: Collator, batch_size: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Metrics on each eval split, e.g. {"validation": {"accuracy": 91.2}}."""
    return {name: compute_metrics(spec, *predict(model, split, collate, 2 * batch_size, device))
            for name, split in splits.items()}


@dataclass
class LoopData:
    """What the loop reads: the task, its training and eval splits, and how to batch them."""

    spec: TaskSpec
    train: datasets.Dataset
    evals: dict[str, datasets.Dataset]
    collate: Collator


@dataclass
class Teaching:
    """What a student learns from beside the labels: the frozen teacher with its pseudo
    classifiers, the teacher layer each student layer matches (PKD), and the UKD layer plan."""

    teacher: WithPseudoClassifiers
    layer_map: list[int] | None = None
    plan: LayerPlan | None = None
    known: KnownOutputs | None = None   # the teacher's outputs on examples it has read


class Checkpoints:
    """A run's ``checkpoints/``: ``last/`` to resume from (model, optimizer, scheduler, RNG and
    progress, as Accelerate saves them) and ``best.safetensors``, the best weights so far."""

    def __init__(self, folder: Path, accelerator: Accelerator):
        self.folder, self.accelerator = folder, accelerator
        self.last, self.best = folder / "last", folder / "best.safetensors"

    def save(self, progress: Progress) -> None:
        """Written beside, then renamed over the last one. Not files.replace_folder: every
        process of a multi-GPU run writes its part, and they meet between the steps."""
        tmp, main = self.folder / "last.tmp", self.accelerator.is_main_process
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()
        if main:
            (tmp / "progress.json").write_text(json.dumps(progress.__dict__, indent=1))
            shutil.rmtree(self.last, ignore_errors=True)
            tmp.rename(self.last)
        self.accelerator.wait_for_everyone()

    def load(self) -> Progress | None:
        """Restore the last checkpoint's states and return its progress (None: there is none)."""
        if not (self.last / "progress.json").is_file():
            return None
        self.accelerator.load_state(str(self.last))
        return Progress(**json.loads((self.last / "progress.json").read_text()))

    def save_best(self, model: nn.Module) -> None:
        if self.accelerator.is_main_process:
            state = self.accelerator.unwrap_model(model).state_dict()
            write_with(self.best, lambda tmp: save_file(
                {k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp)))

    def load_best(self, model: nn.Module) -> nn.Module:
        """``model`` unwrapped, with the best weights if any were saved."""
        model = self.accelerator.unwrap_model(model)
        if self.best.is_file():
            model.load_state_dict(load_file(str(self.best)))
        return model


class Distiller:
    """Trains ``student`` on ``data.train`` under ``training`` with the ``loss`` of a method,
    evaluating on ``data.evals`` each epoch; ``run_dir`` gets checkpoints and status.json."""

    def __init__(self, training: TrainingConfig, loss: MethodConfig, data: LoopData,
                 student: WithPseudoClassifiers, run_dir: Path,
                 accelerator: Accelerator | None = None, teaching: Teaching | None = None,
                 quiet: bool = False):
        if training.lr is None or training.batch_size is None:
            raise ValueError("training.lr or batch_size is unset: Recipe.for_device() fills them in")
        collate = data.collate
        train = collate.tokenized(data.train)
        evals = {k: collate.tokenized(v) for k, v in data.evals.items()}
        self.training, self.loss, self.spec = training, loss, data.spec
        self.train_split, self.evals, self.collate, self.quiet = train, evals, collate, quiet
        self.layer_map = teaching.layer_map if teaching else None
        self.weights = loss.weights()
        self.accelerator = accelerator or make_accelerator(training)
        self.device = self.accelerator.device
        plan = teaching.plan if teaching else None
        self.plan = plan and LayerPlan(plan.student, plan.allowed.to(self.device))
        self.hidden_method = self.weights["delta"] > 0
        cfg = training
        self.steps_per_epoch = math.ceil(num_batches(len(train), cfg.batch_size) / cfg.grad_accum)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        backbone = list(student.backbone.parameters())
        added = [p for n, p in student.named_parameters() if not n.startswith("backbone.")]
        optimizer = torch.optim.AdamW([
            {"params": [p for p in backbone if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in backbone if p.ndim <= 1], "weight_decay": 0.0},
            {"params": added, "lr": cfg.pseudo_lr, "weight_decay": 0.0}], lr=cfg.lr,
            fused=True)  # one kernel over all tensors: on 2 CPU cores 18 ms a step, not 134
        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(cfg.warmup_ratio * self.total_steps), self.total_steps)
        self.student, self.optimizer, self.scheduler = self.accelerator.prepare(
            student, optimizer, scheduler)
        self.teacher = teacher = teaching.teacher if teaching else None
        self.cache, self.prefilled = None, 0
        if teacher is not None:
            teacher.to(self.device).eval().requires_grad_(False)
            if cfg.cache_teacher and not self.hidden_method and teacher.pseudo is not None:
                self.cache = TeacherCache(len(train), len(teacher.pseudo.heads),
                                          data.spec.num_labels, self.device)
                if teaching.known is not None:
                    self.prefilled = self.cache.prefill(text_keys(train), teaching.known)
        self.progress = Progress()
        self.run = RunFolder(run_dir)
        self.checkpoints = Checkpoints(self.run.checkpoints, self.accelerator)

    # --- the loss -------------------------------------------------------------------------
    def teacher_outputs(self, batch: Batch) -> LayerOutputs:
        cached = self.cache.get(batch.idx) if self.cache is not None else None
        if cached is not None:
            return cached
        with torch.no_grad(), self.accelerator.autocast():
            out = self.teacher(with_states=self.hidden_method, **batch.teacher_inputs)
        if self.cache is not None:
            self.cache.put(batch.idx, out)
        return out

    def scheduled_weights(self) -> dict[str, float]:
        """The method's loss weights at the current step, after its gamma schedule."""
        w, schedule = dict(self.weights), self.loss.gamma_schedule
        done = self.progress.step / self.total_steps
        if schedule == "decay":
            w["gamma"] *= 1 - done
        elif schedule == "two_stage":
            if done < 0.5:
                w["alpha"] = w["beta"] = 0.0
            else:
                w["gamma"] = 0.0
        return w

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each weighted term of the method's loss for one batch, and their sum as ``loss``."""
        w, method = self.scheduled_weights(), self.loss
        with self.accelerator.autocast():
            s = self.student(with_states=self.hidden_method, **batch.student_inputs)
        terms = {"ce": losses.task_loss(s.logits.float(), batch.labels)}
        if self.teacher is not None and (w["beta"] or w["gamma"] or w["delta"]):
            t = self.teacher_outputs(batch)
            T = method.temperature
            if w["beta"]:
                terms["kd"] = losses.kd(s.logits.float(), t.logits.float(), T)
            if w["gamma"] and (self.plan is None or self.plan.student):
                student, teacher = s.pseudo_logits, t.pseudo_logits
                if method.last_layer == "classifier":  # the model's own head reads the last layer
                    student = torch.cat([student[:, :-1], s.logits.unsqueeze(1)], dim=1)
                    teacher = torch.cat([teacher[:, :-1], t.logits.unsqueeze(1)], dim=1)
                allowed = None
                if self.plan is not None:
                    student, allowed = student[:, self.plan.student], self.plan.allowed
                if method.teacher_gate == "correct" and teacher.shape[-1] > 1:
                    allowed = losses.correct_layers(teacher, batch.labels, allowed)
                terms["ukd"] = losses.ukd(student.float(), teacher.float(), T,
                                          method.attention_space, method.attention_scale,
                                          method.attention_temperature, allowed,
                                          method.layer_reduce)
            if w["delta"] and method.hidden == "pkd":
                terms["pkd"] = losses.pkd(s.states.float(), t.states[:, self.layer_map].float())
            if w["delta"] and method.hidden == "alp":
                terms["alp"] = losses.alp(s.states.float(), t.states.float())
        weight = {"ce": w["alpha"], "kd": w["beta"], "ukd": w["gamma"],
                  **{term: w["delta"] for term in HIDDEN_TERMS}}
        terms["loss"] = sum(weight[k] * v for k, v in terms.items())
        return terms

    # --- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        self.checkpoints.save(self.progress)

    def load_best(self) -> WithPseudoClassifiers:
        return self.checkpoints.load_best(self.student)

    # --- the loop -------------------------------------------------------------------------
    def write_status(self, phase: str) -> None:
        """``status.json`` in the run folder: where training stands, for whoever watches the run
        (the service's job status reads it). Written beside, then renamed."""
        if not self.accelerator.is_main_process:
            return
        p = self.progress
        status = {"phase": phase, "step": p.step, "total_steps": self.total_steps,
                  "epoch": p.epoch, "epochs": self.training.epochs,
                  "loss": p.losses[-1] if p.losses else None, "history": p.history,
                  "updated": time.time()}
        self.run.write_status(status)
        self.status_written = time.monotonic()

    def metrics(self, backbone: nn.Module, run_precision: bool = True) -> dict[str, dict[str, float]]:
        """Metrics of ``backbone`` on the eval splits, under the run's autocast or in fp32.

        The epochs are scored in the run's precision: with bf16 on this project's 2-core CPU a
        pass over SST-2 dev took 1.2 s for the MiniLM teacher, against 3.9 s in fp32, and the
        teacher is scored each epoch. The weights kept are scored once more in fp32, as their
        stripped and exported copies run."""
        with self.accelerator.autocast() if run_precision else contextlib.nullcontext():
            return evaluate(backbone, self.evals, self.spec, self.collate,
                            self.training.batch_size, self.device)

    def evaluate_student(self) -> dict[str, dict[str, float]]:
        metrics = self.metrics(self.accelerator.unwrap_model(self.student).backbone)
        self.student.train()
        return metrics

    def end_of_epoch(self, epoch: int) -> None:
        metrics = self.evaluate_student()
        score = selection_score(self.spec, next(iter(metrics.values())))
        self.progress.history.append({"epoch": epoch, "step": self.progress.step, "eval": metrics})
        if score > self.progress.best_metric:
            self.progress.best_metric, self.progress.best_step = score, self.progress.step
            self.checkpoints.save_best(self.student)
        if not self.quiet:
            tqdm.write(f"epoch {epoch + 1}: {json.dumps(metrics)}")

    def _flush_losses(self, pending: list[torch.Tensor], bar: tqdm, seen: int,
                      started: float) -> None:
        """Read the losses of the last steps off the device in one transfer (one sync, not one
        per step) into the progress, and show the latest."""
        if not pending:
            return
        self.progress.losses += [round(v, 6) for v in torch.stack(pending).float().tolist()]
        pending.clear()
        bar.set_postfix(loss=f"{self.progress.losses[-1]:.4f}",
                        ex_s=f"{seen / (time.perf_counter() - started):.0f}")

    def train(self, resume: bool = False) -> Progress:
        """Run (or resume) training; returns the progress with the per-epoch history."""
        cfg = self.training
        self.checkpoints.folder.mkdir(parents=True, exist_ok=True)
        saved = self.checkpoints.load() if resume else None
        if saved is not None:
            self.progress = saved
            if not self.quiet:
                tqdm.write(f"resumed at step {saved.step} (epoch {saved.epoch + 1})")
        self.student.train()
        p = self.progress
        bar = tqdm(total=self.total_steps, initial=p.step, disable=self.quiet, unit="step",
                   desc=f"{self.loss.name}", dynamic_ncols=True)
        seen, started, pending = 0, time.perf_counter(), []
        checkpointed = time.monotonic()
        lengths = text_lengths(self.train_split) if cfg.group_by_length else None
        workers = cfg.loader_workers
        if workers is None:
            workers = LOADER_WORKERS if self.device.type == "cuda" else 0
        self.write_status("training")
        try:
            while p.epoch < cfg.epochs and p.step < self.total_steps:
                order = epoch_order(len(self.train_split), cfg.seed, p.epoch, lengths,
                                    cfg.batch_size)
                start, world = p.batch, self.accelerator.num_processes
                for i, batch in enumerate(batches(self.train_split, self.collate, cfg.batch_size,
                                                  order, start, self.accelerator.process_index,
                                                  world, workers)):
                    batch = batch.to(self.device)
                    with self.accelerator.accumulate(self.student):
                        terms = self.loss_terms(batch)
                        self.accelerator.backward(terms["loss"])
                        if self.accelerator.sync_gradients:
                            self.accelerator.clip_grad_norm_(self.student.parameters(), 1.0)
                        self.optimizer.step()
                        self.scheduler.step()
                        self.optimizer.zero_grad()
                    seen += len(batch.labels)
                    if not self.accelerator.sync_gradients:
                        continue
                    p.step, p.batch = p.step + 1, start + (i + 1) * world
                    pending.append(terms["loss"].detach())
                    bar.update(1)
                    status_due = time.monotonic() - self.status_written > STATUS_EVERY_S
                    checkpoint_due = (time.monotonic() - checkpointed > 60 * cfg.checkpoint_minutes
                                      or (cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0))
                    if len(pending) >= LOSS_EVERY or status_due or checkpoint_due:
                        self._flush_losses(pending, bar, seen, started)
                    if checkpoint_due:
                        self.save_checkpoint()
                        checkpointed = time.monotonic()
                    if status_due:
                        self.write_status("training")
                    if p.step >= self.total_steps:
                        break
                self._flush_losses(pending, bar, seen, started)
                self.end_of_epoch(p.epoch)
                p.epoch, p.batch = p.epoch + 1, 0
                self.save_checkpoint()
                checkpointed = time.monotonic()
                self.write_status("training")
        except KeyboardInterrupt:
            self._flush_losses(pending, bar, seen, started)
            self.save_checkpoint()
            self.write_status("interrupted")
            raise Interrupted(f"stopped at step {p.step}; checkpoint saved") from None
        finally:
            bar.close()
            self.throughput = {"train_seconds": round(time.perf_counter() - started, 1),
                               "examples_per_s": round(seen / (time.perf_counter() - started), 1)}
        self.write_status("finished")
        return p
