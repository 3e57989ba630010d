"""Teachers: fine-tuning a base into one, and stage 1 of Universal-KD (its pseudo classifiers).

Both results are cached under ``UKD_HOME`` (default ``~/.cache/ukd-compress``), so a second run
starts at the student: ``teachers/<base>-<task>/`` holds a stock fine-tuned model folder and
``pseudo_classifiers/<key>/`` the teacher's pseudo classifiers (safetensors) with their dev metrics,
and the teacher's logits on the training examples that trained them (a student run's cache
starts from those).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

from .data import Collator, batches, by_length, text_keys
from .distill import Distiller, KnownOutputs, LoopData, native_bf16
from .errors import Interrupted
from .files import cache_folder
from .heads import PseudoClassifiers, WithPseudoClassifiers, backbone_widths, layer_states
from .losses import task_loss
from .models import BASE_ALIASES, load_base_classifier, load_teacher, load_tokenizer
from .recipe import MethodConfig, Recipe, TrainingConfig
from .strip import save_model_folder
from .tasks import TaskSpec, compute_metrics, subsample


KNOWN_OUTPUTS = "train_outputs.safetensors"  # beside the pseudo classifiers: KnownOutputs


def ukd_home() -> Path:
    return Path(os.environ.get("UKD_HOME", "~/.cache/ukd-compress")).expanduser()


def finetune_teacher(base: str, spec: TaskSpec, train: datasets.Dataset,
                     evals: dict[str, datasets.Dataset], recipe: Recipe, folder: Path) -> Path:
    """Fine-tune ``base`` on the task with cross-entropy and save it as a stock model folder."""
    set_seed(recipe.training.seed)  # the new classifier head's initialisation, then dropout
    tokenizer = load_tokenizer(base)
    model = load_base_classifier(base, spec.label_names)
    cfg = recipe.teacher
    training = TrainingConfig(epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                              batch_size=cfg.finetune_batch_size, seed=recipe.training.seed,
                              group_by_length=recipe.training.group_by_length,
                              precision=recipe.training.precision)
    work = folder.with_name(folder.name + ".work")
    collate = Collator(tokenizer, None, recipe.task.max_length, spec.is_regression)
    distiller = Distiller(training, MethodConfig("ce"), LoopData(spec, train, evals, collate),
                          WithPseudoClassifiers(model), work)
    try:
        distiller.train(resume=True)
    except Interrupted as exc:
        raise Interrupted(f"{exc} while fine-tuning the teacher; the same command continues it") from None
    best = distiller.load_best().backbone
    metrics = distiller.progress.history
    save_model_folder(best, tokenizer, folder,
                      {"teacher.json": json.dumps({"base": base, "task": spec.name,
                                                   "history": metrics,
                                                   "training": distiller.throughput,
                                                   "settings": asdict(training)}, indent=1)})
    shutil.rmtree(work, ignore_errors=True)
    return folder


def teacher_folder(base: str, spec: TaskSpec, recipe: Recipe, train: datasets.Dataset) -> Path:
    """Where the teacher fine-tuned from ``base`` under these settings is cached."""
    cfg = recipe.teacher
    sample = train[:4]["text_a"] + train[-4:]["text_a"]  # identifies the data and its subsample
    settings = [cfg.finetune_epochs, cfg.finetune_lr, cfg.finetune_batch_size, len(train), sample,
                recipe.task.max_length, recipe.training.seed, recipe.training.group_by_length]
    key = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:8]
    return ukd_home() / "teachers" / f"{Path(base).name}-{spec.name}-{key}"


def resolve_teacher(recipe: Recipe, spec: TaskSpec, train: datasets.Dataset,
                    evals: dict[str, datasets.Dataset]) -> str:
    """The folder or hub name of a fine-tuned teacher; a base alias is fine-tuned once and cached."""
    name = recipe.teacher.name
    if name not in BASE_ALIASES:
        return name
    folder = teacher_folder(name, spec, recipe, train)
    if not (folder / "config.json").is_file():
        tqdm.write(f"fine-tuning a {name} teacher on {spec.name} (cached in {folder} for later runs)")
        finetune_teacher(name, spec, train, evals, recipe, folder)
    return str(folder)


def collect_states(model: PreTrainedModel, split: datasets.Dataset, collate: Collator,
                   batch_size: int, device: torch.device, pooling: str
                   ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-layer representations (layers x (n, width), float16 on CPU), final logits and labels,
    in the split's order; computed in length order, under bf16 where the device has it."""
    model.eval()
    states, logits, labels = [], [], []
    order = by_length(split)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=native_bf16()):
        for batch in batches(split, collate, batch_size, order):
            batch = batch.to(device)
            out = model(**batch.teacher_inputs, output_hidden_states=True)
            layers = layer_states(out.hidden_states, batch.teacher_inputs["attention_mask"], pooling)
            states.append([s.half().cpu() for s in layers])
            logits.append(out.logits.float().cpu())
            labels.append(batch.labels.cpu())
    restore = order.argsort()
    per_layer = [torch.cat(layer)[restore] for layer in zip(*states)]
    return per_layer, torch.cat(logits)[restore], torch.cat(labels)[restore]


def train_pseudo_classifiers(teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                             spec: TaskSpec, train: datasets.Dataset,
                             evals: dict[str, datasets.Dataset], recipe: Recipe,
                             device: torch.device
                             ) -> tuple[PseudoClassifiers, dict, KnownOutputs]:
    """Stage 1: the teacher frozen, train one pseudo classifier per layer on the task labels.

    The backbone runs once over (at most ``head_samples``) examples and its layer states are kept,
    so the heads' epochs cost almost nothing. Returns the heads, the per-layer dev metrics, and
    the teacher's final and pseudo logits on those examples (for the student's teacher cache).
    """
    cfg = recipe.teacher
    set_seed(recipe.training.seed)
    collate = Collator(tokenizer, tokenizer, recipe.task.max_length, spec.is_regression)
    teacher.to(device)
    sample = subsample(train, cfg.head_samples, recipe.training.seed)
    pooling = recipe.method.layer_pooling
    states, final_logits, labels = collect_states(teacher, sample, collate, 64, device, pooling)
    heads = PseudoClassifiers(backbone_widths(teacher), spec.num_labels, cfg.pseudo_head).to(device)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=cfg.head_lr)
    generator = torch.Generator().manual_seed(recipe.training.seed)
    heads.train()
    steps = cfg.head_epochs * ((len(labels) + 63) // 64)
    for _ in tqdm(range(cfg.head_epochs), desc="teacher pseudo classifiers", leave=False):
        for rows in torch.randperm(len(labels), generator=generator).split(64):
            logits = heads([s[rows].float().to(device) for s in states])
            target = labels[rows].to(device)
            loss = sum(task_loss(logits[:, j], target) for j in range(logits.shape[1]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    heads.eval()
    report = {"steps": steps, "teacher": {}, "layers": {}}
    with torch.no_grad():
        known = KnownOutputs(text_keys(sample), final_logits, torch.cat(
            [heads([s[rows].float().to(device) for s in states]).cpu()
             for rows in torch.arange(len(labels)).split(1024)]))
        for name, split in evals.items():
            eval_states, final, eval_labels = collect_states(teacher, split, collate, 64, device,
                                                             pooling)
            pseudo = heads([s.float().to(device) for s in eval_states]).cpu()
            report["teacher"][name] = compute_metrics(spec, final.numpy(), eval_labels.numpy())
            report["layers"][name] = [compute_metrics(spec, pseudo[:, j].numpy(), eval_labels.numpy())
                                      for j in range(pseudo.shape[1])]
    return heads, report, known


def teacher_heads_key(teacher_name: str, spec: TaskSpec, recipe: Recipe, data_id: str) -> str:
    cfg = recipe.teacher
    parts = [str(Path(teacher_name).resolve()) if Path(teacher_name).exists() else teacher_name,
             spec.name, data_id, cfg.pseudo_head, cfg.head_epochs, cfg.head_lr, cfg.head_samples,
             recipe.method.layer_pooling, recipe.task.max_length, recipe.training.seed]
    weights = Path(teacher_name) / "model.safetensors"
    if weights.is_file():
        parts.append(weights.stat().st_mtime_ns)
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def load_teacher_with_heads(teacher_name: str, spec: TaskSpec, train: datasets.Dataset,
                            evals: dict[str, datasets.Dataset], recipe: Recipe, data_id: str,
                            device: torch.device) -> tuple[PreTrainedModel, PreTrainedTokenizerBase,
                                                           PseudoClassifiers, dict, Path]:
    """The teacher, its tokenizer and its pseudo classifiers, trained now or read from the cache."""
    teacher = load_teacher(teacher_name, spec.num_labels)
    tokenizer = load_tokenizer(teacher_name)
    folder = ukd_home() / "pseudo_classifiers" / teacher_heads_key(teacher_name, spec, recipe, data_id)
    if (folder / "pseudo_classifiers.json").is_file():
        heads = PseudoClassifiers.load(folder)
        report = json.loads((folder / "pseudo_classifiers.json").read_text())["report"]
        return teacher, tokenizer, heads, report, folder
    heads, report, known = train_pseudo_classifiers(teacher, tokenizer, spec, train, evals,
                                                    recipe, device)

    def save(tmp: Path) -> None:
        heads.cpu().save(tmp, {"teacher": teacher_name, "task": spec.name, "report": report})
        known.save(tmp / KNOWN_OUTPUTS)
    cache_folder(folder, save)
    return teacher, tokenizer, heads, report, folder
