"""One distillation run, from a recipe to a finished run folder.

Everything that can fail on bad input (task, data, teacher, student) is checked before the run
folder exists. The run is written to ``<output>.partial`` and renamed to ``<output>`` only when
the stripped student and its report are complete; an interrupted run resumes from its
``.partial`` folder (run_folder.py names what is in it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from accelerate import Accelerator
from transformers import PreTrainedTokenizerBase, set_seed

from .data import Collator
from .distill import Distiller, KnownOutputs, LoopData, Teaching, device_type, make_accelerator
from .errors import Interrupted, UserError
from .heads import PseudoClassifiers, WithPseudoClassifiers, backbone_widths
from .layer_plan import LayerPlan, layer_plan
from .models import load_config, load_tokenizer
from .recipe import Recipe
from .report import plot_report
from .files import artifact_hashes, cache_folder, folder_bytes, replace_folder
from .run_folder import PARTIAL, RunFolder
from .strip import strip
from .students import Student, build_student, check_fits, evenly_spaced
from .tasks import TaskData, load_task, trivial_baseline
from .teacher import KNOWN_OUTPUTS, load_teacher_with_heads, resolve_teacher, ukd_home
from .vocab import train_tokenizer, trim_tokenizer

CPU_TRAIN_SAMPLES = 8000


def training_data(recipe: Recipe) -> TaskData:
    """The task's data for training: all of the training split on a GPU, a sample on a CPU
    unless the recipe says how many."""
    return load_task(recipe, None if device_type() == "cuda" else CPU_TRAIN_SAMPLES)


@dataclass
class Setup:
    """Everything a run needs, built and checked before its folder exists."""

    data: TaskData
    teacher: WithPseudoClassifiers
    teacher_name: str
    teacher_report: dict
    teacher_heads_folder: Path
    student: WithPseudoClassifiers
    student_tokenizer: PreTrainedTokenizerBase
    vocabulary: dict | None  # the student's own vocabulary: size, source, how rows were made
    collate: Collator
    layer_map: list[int]
    plan: LayerPlan
    accelerator: Accelerator            # the run's device and precision, built once
    known: KnownOutputs | None          # the teacher's logits on examples stage 1 read

    def loop_data(self) -> LoopData:
        return LoopData(self.data.spec, self.data.train, self.data.evals, self.collate)

    def teaching(self) -> Teaching:
        return Teaching(self.teacher, self.layer_map, self.plan, self.known)


def wrap_student(recipe: Recipe, student: Student, teacher_heads: PseudoClassifiers,
                     teacher_width: int) -> WithPseudoClassifiers:
    """The student plus pseudo classifiers (UKD) and projections (PKD/ALP) as the method needs."""
    weights = recipe.method.weights()
    widths = backbone_widths(student.model)
    pseudo = projection = None
    if weights["gamma"]:
        pseudo = PseudoClassifiers(widths, teacher_heads.num_labels, teacher_heads.kind)
        if student.kept_layers is not None:  # start from the teacher's heads of the kept layers
            pseudo.heads = nn.ModuleList(copy.deepcopy(teacher_heads.heads[i])
                                         for i in student.kept_layers)
    if weights["delta"] and any(w != teacher_width for w in widths):
        projection = nn.ModuleList(nn.Linear(w, teacher_width) for w in widths)
    return WithPseudoClassifiers(student.model, pseudo, projection, recipe.method.layer_pooling)


def student_vocabulary(recipe: Recipe, teacher_tokenizer: PreTrainedTokenizerBase,
                       train: datasets.Dataset, saved: Path | None = None
                       ) -> PreTrainedTokenizerBase | None:
    """The student's own tokenizer, or None to share the teacher's: ``saved`` (a resumed run's)
    if it exists, else the recipe's tokenizer, else one of ``vocab_size`` tokens made from the
    texts of ``train`` (trimmed or trained). It is cached under ``UKD_HOME/tokenizers``: training
    is not deterministic, and every method of a paired study must read the same vocabulary.

    ``train`` is the whole training split, also when the student learns from a sample of it:
    texts cost little to count, and on SST-2 an 8,000-token vocabulary trimmed on all 67,349
    texts kept the full teacher at 88.65 dev accuracy with no training (88.53 on its own
    vocabulary), 87.73 when trimmed on an 8,000-text sample."""
    cfg = recipe.student
    if saved is not None and saved.is_dir():
        return load_tokenizer(str(saved))
    if cfg.tokenizer is None and cfg.vocab_size is None:
        return None
    own = load_tokenizer(cfg.tokenizer) if cfg.tokenizer is not None else None
    for who, tokenizer in (("the teacher's", teacher_tokenizer), ("the student's", own)):
        if tokenizer is not None and not tokenizer.is_fast:  # transfer reads its tokenizers model
            raise UserError(f"{who} tokenizer ({type(tokenizer).__name__}) has no fast "
                            "(tokenizers-library) version, which a student vocabulary needs")
    if own is not None:
        return own
    texts = list(train["text_a"]) + [t for t in train["text_b"] if t is not None]
    key = hashlib.sha256(json.dumps([cfg.vocab_size, cfg.vocab_method, texts,
                                     teacher_tokenizer.backend_tokenizer.to_str()]).encode())
    make = trim_tokenizer if cfg.vocab_method == "trim" else train_tokenizer
    folder = cache_folder(
        ukd_home() / "tokenizers" / f"{cfg.vocab_method}-{cfg.vocab_size}-{key.hexdigest()[:16]}",
        lambda tmp: make(teacher_tokenizer, texts, cfg.vocab_size).save_pretrained(tmp))
    return load_tokenizer(str(folder))


def prepare(recipe: Recipe, saved_tokenizer: Path | None = None) -> Setup:
    """Load and check everything a run of ``recipe`` (validated) needs; ``saved_tokenizer`` is a
    resumed run's vocabulary."""
    data = training_data(recipe)
    check_fits(recipe.student.spec, load_config(recipe.teacher.name).num_hidden_layers)
    teacher_name = resolve_teacher(recipe, data.spec, data.teacher_train, data.evals)
    accelerator = make_accelerator(recipe.training)
    teacher, tokenizer, heads, report, heads_folder = load_teacher_with_heads(
        teacher_name, data.spec, data.train, data.evals, recipe, data.source, accelerator.device)
    set_seed(recipe.training.seed)  # the same student and dropout whether the teacher was cached
    own = student_vocabulary(recipe, tokenizer, data.all_train, saved_tokenizer)
    student = build_student(recipe.student.spec, teacher, tokenizer, data.spec.label_names,
                            recipe.student.layers, recipe.student.hidden, own)
    wrapped = wrap_student(recipe, student, heads, teacher.config.hidden_size)
    depth = teacher.config.num_hidden_layers
    layer_map = student.kept_layers or evenly_spaced(depth, len(backbone_widths(student.model)))
    collate = Collator(student.tokenizer, tokenizer, recipe.task.max_length, data.spec.is_regression)
    layer_scores = [next(iter(m.values())) for m in next(iter(report["layers"].values()))]
    plan = layer_plan(recipe.method, len(backbone_widths(student.model)), len(heads.heads),
                      layer_scores)
    vocabulary = None if student.transfer is None else {
        "size": len(student.tokenizer), "teacher_size": len(tokenizer),
        "source": recipe.student.tokenizer or (f"{recipe.student.vocab_method} on the "
                                               f"{len(data.all_train):,} training examples"),
        "transfer": {k: getattr(student.transfer, k)
                     for k in ("copied", "averaged", "special", "unknown")}}
    return Setup(data, WithPseudoClassifiers(teacher, heads, pooling=recipe.method.layer_pooling),
                 teacher_name, report, heads_folder, wrapped, student.tokenizer, vocabulary,
                 collate, layer_map, plan, accelerator,
                 KnownOutputs.load(heads_folder / KNOWN_OUTPUTS))


def default_output(recipe: Recipe) -> Path:
    """runs/<task>-<student>-<method>-<time>; the task of a user's files is their file's stem."""
    slug = recipe.student.spec.replace(":", "").replace("/", "_").replace(",", "_")
    task = Path(recipe.task.train_file).stem if recipe.task.train_file else recipe.task.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{task}-{slug}-{recipe.method.name}-{stamp}"


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def embedding_params(model: nn.Module) -> int:
    """The token embedding table: most of a small student, and what its vocabulary sets."""
    return model.get_input_embeddings().weight.numel()


def run_distill(recipe: Recipe, output: Path | None = None, resume: Path | None = None,
                quiet: bool = False) -> Path:
    """Distil, strip and report; returns the finished run folder."""
    started = time.perf_counter()
    if resume is not None:
        work = RunFolder(resume)
        if not work.is_resumable:
            raise UserError(f"{resume} is not an unfinished run folder (a *{PARTIAL} folder "
                            "with recipe.yaml)")
        recipe = work.recipe()
    else:
        recipe = recipe.validate().for_device(device_type())
        work = RunFolder(output or default_output(recipe)).partial()
        for run in (work.final(), work):
            if run.path.exists():
                raise UserError(f"{run.path} already exists; pick another --output "
                                f"{'or --resume it' if run is work else ''}".strip())
    setup = prepare(recipe, work.student_tokenizer)
    work.path.mkdir(parents=True, exist_ok=True)
    work.write_recipe(recipe.to_yaml())
    if setup.vocabulary is not None and not work.student_tokenizer.is_dir():
        replace_folder(work.student_tokenizer, setup.student_tokenizer.save_pretrained)
    shutil.copytree(setup.teacher_heads_folder, work.teacher_heads, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(KNOWN_OUTPUTS))  # a cache, not the model
    distiller = Distiller(recipe.training, recipe.method, setup.loop_data(), setup.student,
                          work.path, setup.accelerator, setup.teaching(), quiet)
    try:
        progress = distiller.train(resume=resume is not None)
    except Interrupted as exc:
        raise Interrupted(f"{exc}; continue with: ukd-compress distill --resume {work.path}") from None
    best = distiller.load_best()
    strip(best, setup.student_tokenizer, work.student)
    student_metrics = distiller.metrics(best.backbone, run_precision=False)  # as stripped: fp32
    report = {
        "task": setup.data.spec.name, "data": setup.data.source,
        "train_examples": len(setup.data.train),
        "teacher": {"name": setup.teacher_name, "params": params(setup.teacher.backbone),
                    "embedding_params": embedding_params(setup.teacher.backbone),
                    "metrics": setup.teacher_report["teacher"],
                    "pseudo_classifier_metrics": setup.teacher_report["layers"]},
        "student": {"spec": recipe.student.spec, "params": params(best.backbone),
                    "embedding_params": embedding_params(best.backbone),
                    "vocabulary": setup.vocabulary or {"size": len(setup.student_tokenizer),
                                                       "source": "the teacher's"},
                    "bytes": folder_bytes(work.student), "metrics": student_metrics,
                    "best_step": progress.best_step},
        "method": {**asdict(recipe.method), "weights": recipe.method.weights(),
                   "teacher_cache": distiller.cache is not None,
                   "teacher_cache_prefilled": distiller.prefilled,
                   "ukd_attends": {str(s): t for s, t in zip(setup.plan.student,
                                                             setup.plan.describe())}},
        "baseline": baseline(setup.data),
        "history": progress.history,
        "recipe_sha256": recipe.sha256(),
        "device": str(distiller.device), "precision": distiller.accelerator.mixed_precision,
        "platform": platform.platform(), "torch": torch.__version__,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "training": distiller.throughput,  # this process's student loop (a resumed run: since resuming)
    }
    report["warnings"] = warnings(report)
    report["artifacts"] = artifact_hashes(work.path, (work.student.name, work.teacher_heads.name))
    report["artifacts"][work.recipe_file.name] = recipe.sha256()
    work.write_report(report)
    plot_report(report, work.report_plot)
    final = work.finish()
    if not quiet:
        tqdm.write(summary(report, final.path))
    return final.path


def baseline(data: TaskData) -> dict:
    """The trivial baseline's metrics on each eval split, for reading a student's beside it."""
    train_labels = np.asarray(data.train["label"])
    return {"name": "training mean" if data.spec.is_regression else "majority class",
            "metrics": {name: trivial_baseline(data.spec, train_labels, np.asarray(split["label"]))
                        for name, split in data.evals.items()}}


def warnings(report: dict) -> list[str]:
    """What a reader of the report must not miss: a student no better than a constant guess."""
    out = []
    for split, metrics in report["student"]["metrics"].items():
        name, value = next(iter(metrics.items()))
        floor = report["baseline"]["metrics"][split][name]
        if value < floor + 1.0:
            out.append(f"the student's {split} {name} ({value:.2f}) is within 1 point of the "
                       f"{report['baseline']['name']} baseline ({floor:.2f}): it learned "
                       "little beyond a constant guess")
    return out


def _metrics_line(metrics: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{split} {k} {v:.2f}" for split, m in metrics.items() for k, v in m.items())


def summary(report: dict, run_dir: Path) -> str:
    """A few lines a person reads at the end of a run."""
    lines = [f"run folder: {run_dir}"]
    for who in ("teacher", "student"):
        lines.append(f"{who:8s} {report[who]['params'] / 1e6:6.1f}M params  "
                     f"{_metrics_line(report[who]['metrics'])}")
    vocabulary = report["student"]["vocabulary"]
    if vocabulary["source"] != "the teacher's":
        lines.append(f"student vocabulary: {vocabulary['size']:,} tokens, {vocabulary['source']}")
    lines.append(f"baseline ({report['baseline']['name']})  "
                 f"{_metrics_line(report['baseline']['metrics'])}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines.append(f"stripped student: {run_dir / 'student'} "
                 "(AutoModelForSequenceClassification.from_pretrained loads it)")
    return "\n".join(lines)
