"""The training loop: a student learns from labels and, if given, a frozen teacher.

One loop serves teacher fine-tuning (method ``ce``, no teacher) and every distillation method.
Accelerate owns devices, bf16 autocast on CUDA, gradient accumulation and multi-GPU
(``accelerate launch`` needs no code change); this module owns the order of batches, the
teacher-output cache, checkpoints every N steps, evaluation each epoch and the best checkpoint.
"""

from __future__ import annotations

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
from .data import Batch, Collator, batches, epoch_order, num_batches, text_lengths
from .heads import LayerOutputs, WithPseudoClassifiers
from .recipe import Recipe
from .report import write_json
from .tasks import TaskSpec, compute_metrics


STATUS_EVERY_S = 2.0


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after saving a resumable checkpoint."""


def make_accelerator(recipe: Recipe) -> Accelerator:
    precision = recipe.training.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "fp32"
    return Accelerator(mixed_precision="bf16" if precision == "bf16" else "no",
                       gradient_accumulation_steps=recipe.training.grad_accum)


class TeacherCache:
    """The frozen teacher's final and pseudo logits per training example, filled on first sight.

    UKD works in the output space, so an example costs (layers + 1) x labels floats: tiny next to
    the hidden states that PKD or ALP-KD would need (those methods run the teacher every step).
    """

    def __init__(self, size: int, layers: int, labels: int, device: torch.device):
        self.logits = torch.zeros(size, labels, device=device)
        self.pseudo = torch.zeros(size, layers, labels, device=device)
        self.filled = torch.zeros(size, dtype=torch.bool, device=device)

    def get(self, idx: torch.Tensor) -> LayerOutputs | None:
        if not bool(self.filled[idx].all()):
            return None
        return LayerOutputs(self.logits[idx], None, self.pseudo[idx])

    def put(self, idx: torch.Tensor, out: LayerOutputs) -> None:
        self.logits[idx] = out.logits.float()
        self.pseudo[idx] = out.pseudo_logits.float()
        self.filled[idx] = True


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
    """Final logits and labels of a model (a backbone or a wrapper) over a split."""
    model.eval()
    out, labels = [], []
    with torch.no_grad():
        for batch in batches(split, collate, batch_size):
            batch = batch.to(device)
            out.append(model(**batch.student_inputs).logits.float().cpu())
            labels.append(batch.labels.cpu())
    return torch.cat(out).numpy(), torch.cat(labels).numpy()


def evaluate(model: nn.Module, splits: dict[str, datasets.Dataset], spec: TaskSpec,
             collate: Collator, batch_size: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Metrics on each eval split, e.g. {"validation": {"accuracy": 91.2}}."""
    return {name: compute_metrics(spec, *predict(model, split, collate, 2 * batch_size, device))
            for name, split in splits.items()}


def primary(metrics: dict[str, dict[str, float]]) -> float:
    """The number that picks the best checkpoint: the first metric of the first split."""
    return next(iter(next(iter(metrics.values())).values()))


class Distiller:
    """Trains ``student`` on ``train`` with the recipe's method, evaluating on ``evals``."""

    def __init__(self, recipe: Recipe, spec: TaskSpec, train: datasets.Dataset,
                 evals: dict[str, datasets.Dataset], student: WithPseudoClassifiers,
                 collate: Collator, run_dir: Path, teacher: WithPseudoClassifiers | None = None,
                 layer_map: list[int] | None = None, quiet: bool = False):
        recipe = recipe.with_student_lr()
        self.recipe, self.spec, self.train_split, self.evals = recipe, spec, train, evals
        self.collate, self.run_dir, self.layer_map, self.quiet = collate, run_dir, layer_map, quiet
        self.weights = recipe.method.weights()
        self.accelerator = make_accelerator(recipe)
        self.device = self.accelerator.device
        self.hidden_method = self.weights["delta"] > 0
        cfg = recipe.training
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
        self.teacher = teacher
        self.cache = None
        if teacher is not None:
            teacher.to(self.device).eval().requires_grad_(False)
            if cfg.cache_teacher and not self.hidden_method and teacher.pseudo is not None:
                self.cache = TeacherCache(len(train), len(teacher.pseudo.heads),
                                          spec.num_labels, self.device)
        self.progress = Progress()
        self.checkpoints = run_dir / "checkpoints"

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

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each weighted term of the method's loss for one batch, and their sum as ``loss``."""
        w, method = self.weights, self.recipe.method
        with self.accelerator.autocast():
            s = self.student(with_states=self.hidden_method, **batch.student_inputs)
        terms = {"ce": losses.task_loss(s.logits.float(), batch.labels)}
        if self.teacher is not None and (w["beta"] or w["gamma"] or w["delta"]):
            t = self.teacher_outputs(batch)
            T = method.temperature
            if w["beta"]:
                terms["kd"] = losses.kd(s.logits.float(), t.logits.float(), T)
            if w["gamma"]:
                terms["ukd"] = losses.ukd(s.pseudo_logits.float(), t.pseudo_logits.float(), T,
                                          method.attention_space, method.attention_scale)
            if w["delta"] and "pkd" in method.name:
                terms["pkd"] = losses.pkd(s.states.float(), t.states[:, self.layer_map].float())
            if w["delta"] and "alp" in method.name:
                terms["alp"] = losses.alp(s.states.float(), t.states.float())
        weight = {"ce": w["alpha"], "kd": w["beta"], "ukd": w["gamma"], "pkd": w["delta"],
                  "alp": w["delta"]}
        terms["loss"] = sum(weight[k] * v for k, v in terms.items())
        return terms

    # --- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Model, optimizer, scheduler, RNG and progress, written beside then renamed over."""
        tmp, last = self.checkpoints / "last.tmp", self.checkpoints / "last"
        main = self.accelerator.is_main_process
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()
        if main:
            (tmp / "progress.json").write_text(json.dumps(self.progress.__dict__, indent=1))
            shutil.rmtree(last, ignore_errors=True)
            tmp.rename(last)
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self) -> bool:
        last = self.checkpoints / "last"
        if not (last / "progress.json").is_file():
            return False
        self.accelerator.load_state(str(last))
        self.progress = Progress(**json.loads((last / "progress.json").read_text()))
        return True

    def save_best(self) -> None:
        if not self.accelerator.is_main_process:
            return
        state = self.accelerator.unwrap_model(self.student).state_dict()
        tmp = self.checkpoints / "best.safetensors.tmp"
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp))
        tmp.rename(self.checkpoints / "best.safetensors")

    def load_best(self) -> WithPseudoClassifiers:
        model = self.accelerator.unwrap_model(self.student)
        best = self.checkpoints / "best.safetensors"
        if best.is_file():
            model.load_state_dict(load_file(str(best)))
        return model

    # --- the loop -------------------------------------------------------------------------
    def write_status(self, phase: str) -> None:
        """``status.json`` in the run folder: where training stands, for whoever watches the run
        (the service's job status reads it). Written beside, then renamed."""
        if not self.accelerator.is_main_process:
            return
        p = self.progress
        status = {"phase": phase, "step": p.step, "total_steps": self.total_steps,
                  "epoch": p.epoch, "epochs": self.recipe.training.epochs,
                  "loss": p.losses[-1] if p.losses else None, "history": p.history,
                  "updated": time.time()}
        write_json(self.run_dir / "status.json", status, indent=None)
        self.status_written = time.monotonic()

    def evaluate_student(self) -> dict[str, dict[str, float]]:
        backbone = self.accelerator.unwrap_model(self.student).backbone
        metrics = evaluate(backbone, self.evals, self.spec, self.collate,
                           self.recipe.training.batch_size, self.device)
        self.student.train()
        return metrics

    def end_of_epoch(self, epoch: int) -> None:
        metrics = self.evaluate_student()
        score = primary(metrics)
        self.progress.history.append({"epoch": epoch, "step": self.progress.step, "eval": metrics})
        if score > self.progress.best_metric:
            self.progress.best_metric, self.progress.best_step = score, self.progress.step
            self.save_best()
        if not self.quiet:
            tqdm.write(f"epoch {epoch + 1}: {json.dumps(metrics)}")

    def train(self, resume: bool = False) -> Progress:
        """Run (or resume) training; returns the progress with the per-epoch history."""
        cfg = self.recipe.training
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        if resume and self.load_checkpoint() and not self.quiet:
            tqdm.write(f"resumed at step {self.progress.step} (epoch {self.progress.epoch + 1})")
        self.student.train()
        p = self.progress
        bar = tqdm(total=self.total_steps, initial=p.step, disable=self.quiet, unit="step",
                   desc=f"{self.recipe.method.name}", dynamic_ncols=True)
        seen, started = 0, time.perf_counter()
        lengths = text_lengths(self.train_split) if cfg.group_by_length else None
        self.write_status("training")
        try:
            while p.epoch < cfg.epochs and p.step < self.total_steps:
                order = epoch_order(len(self.train_split), cfg.seed, p.epoch, lengths,
                                    cfg.batch_size)
                start, world = p.batch, self.accelerator.num_processes
                for i, batch in enumerate(batches(self.train_split, self.collate, cfg.batch_size,
                                                  order, start, self.accelerator.process_index,
                                                  world)):
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
                    p.losses.append(round(terms["loss"].item(), 6))
                    bar.update(1)
                    bar.set_postfix(loss=f"{p.losses[-1]:.4f}",
                                    ex_s=f"{seen / (time.perf_counter() - started):.0f}")
                    if p.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                    if time.monotonic() - self.status_written > STATUS_EVERY_S:
                        self.write_status("training")
                    if p.step >= self.total_steps:
                        break
                self.end_of_epoch(p.epoch)
                p.epoch, p.batch = p.epoch + 1, 0
                self.save_checkpoint()
                self.write_status("training")
        except KeyboardInterrupt:
            self.save_checkpoint()
            self.write_status("interrupted")
            raise Interrupted(f"stopped at step {p.step}; checkpoint saved") from None
        finally:
            bar.close()
        self.write_status("finished")
        return p
