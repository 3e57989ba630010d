"""One dataclass tree describing a run completely, to and from YAML (torchdistill's idea)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from .errors import UserError
from .methods import METHODS

# The knobs of the UKD term that take one of a few words.
METHOD_CHOICES = {
    "attention_space": ("logits", "logprobs"), "layer_pooling": ("mean", "cls"),
    "ukd_layers": ("all", "all_but_last"), "teacher_layers": ("all", "window", "top_for_last"),
    "teacher_gate": ("all", "correct"),
    "last_layer": ("pseudo", "classifier"),
    "layer_reduce": ("sum", "mean"), "gamma_schedule": ("constant", "decay", "two_stage"),
}

# The student's learning rate when a recipe names none, by kind of student: a transformer
# student starts from pretrained (or teacher) weights and is fine-tuned gently; a BiLSTM or CNN
# learns from scratch and, at the transformer rate, stays at the majority class on SST-2.
STUDENT_LR = {"transformer": 1e-4, "scratch": 1e-3}
TEACHER_LR = 1e-4  # fine-tuning a base into a teacher
# Examples per step when a recipe names none, by device. On an H100 a MiniLM-L6 step took 29 ms
# at 32 examples and at 256 alike (it is bound by launching kernels, not by the GPU's work), so
# 256 trains 8x the examples per second there; a CPU's step grows with the batch. The learning
# rates above are for 32 examples; a larger batch scales them by the square root of its size
# (Adam's square-root rule): 256 gives 2.8x. On all of SST-2 (ukd, 3 paired seeds) the student at
# 256 scored 86.05 against 86.20 at 32 (-0.15 +- 0.46): benchmarks/results/gpu-defaults-cpu.md.
DEFAULT_BATCH = {"cpu": 32, "cuda": 256}
BASE_BATCH = 32
SCRATCH_STUDENTS = ("bilstm", "cnn")

PSEUDO_HEAD_KINDS = ("linear", "mlp")  # a pseudo classifier: Linear, or like BERT's head
PRECISIONS = ("auto", "bf16", "fp32")

MIN_VOCAB = 200  # below this a WordPiece vocabulary is little more than its alphabet
VOCAB_METHODS = ("trim", "train")


def scaled_lr(lr: float, batch_size: int) -> float:
    """A learning rate set for BASE_BATCH examples, for ``batch_size`` (square-root rule)."""
    return float(f"{lr * math.sqrt(batch_size / BASE_BATCH):.3g}")


@dataclass
class TeacherConfig:
    name: str = "minilm-l6"          # hub name, folder of a fine-tuned classifier, or a base alias
    pseudo_head: str = "linear"      # linear | mlp
    head_epochs: int = 3             # stage 1: epochs of pseudo-classifier training
    head_lr: float = 3e-3
    head_samples: int = 10000        # stage 1: training examples whose layer states are kept
    finetune_epochs: int = 3         # fine-tuning a base alias into a teacher (cached)
    finetune_lr: float | None = None         # None: TEACHER_LR, scaled to the batch
    finetune_batch_size: int | None = None   # None: DEFAULT_BATCH for the device


@dataclass
class StudentConfig:
    spec: str = "teacher:2"          # teacher:K | hub name or folder | bilstm | cnn
    layers: int = 2                  # bilstm / cnn depth
    hidden: int = 256                # bilstm / cnn width
    # A vocabulary of its own (teacher:K, bilstm, cnn): this many tokens, chosen on the training
    # texts, or a tokenizer folder / hub name; embeddings by vocabulary transfer.
    vocab_size: int | None = None
    # trim: the teacher's most used tokens | train: a new WordPiece. On SST-2 (3 paired seeds)
    # they tied at 8,000 tokens and trim led by 1.4 points at 4,000: benchmarks/results/vocab.md
    vocab_method: str = "trim"
    tokenizer: str | None = None


@dataclass
class TaskConfig:
    name: str = "sst2"               # a GLUE name, or the stem of --train-file
    data_dir: str | None = None      # a folder in GLUE's TSV layout
    train_file: str | None = None
    eval_file: str | None = None
    text_columns: list[str] = field(default_factory=lambda: ["text"])
    label_column: str = "label"
    max_length: int = 128
    max_train_samples: int | None = None   # None: all on GPU, 8,000 on CPU
    max_eval_samples: int | None = None


@dataclass
class MethodConfig:
    name: str = "ukd"
    alpha: float | None = None       # CE weight (None: the method's default)
    beta: float | None = None        # KD weight
    gamma: float | None = None       # UKD weight
    delta: float | None = None       # PKD / ALP-KD weight
    temperature: float = 2.0
    attention_space: str = "logits"  # logits | logprobs
    attention_scale: bool = False
    attention_temperature: float = 1.0  # divides the attention scores: higher is flatter
    layer_pooling: str = "mean"      # how a transformer layer becomes one vector: mean | cls
    ukd_layers: str = "all"          # student layers with a UKD term: all | all_but_last
    last_layer: str = "pseudo"       # the last layer's logits in UKD, for teacher and student:
                                     # its pseudo classifier's, or the model's own classifier's
    teacher_layers: str = "all"      # what a student layer attends to: all | window (teacher
                                     # layers at or above its relative depth) | top_for_last
                                     # (all, but the last student layer the top teacher layer)
    drop_weak_layers: float | None = None  # drop teacher layers this many points below the best
    teacher_gate: str = "all"        # per example, attend to all teacher layers, or only to
                                     # those whose pseudo classifier gets its label right (paired
                                     # on SST-2, no gain: benchmarks/results/quality-gate.md)
    # The UKD term over student layers: mean (its weight does not grow with the student's depth)
    # or sum. Paired over 3 seeds on SST-2 (8,000 examples, teacher:2) mean beat kd by +0.88,
    # sum by +0.31; see benchmarks/results/quality.md.
    layer_reduce: str = "mean"
    gamma_schedule: str = "constant"  # constant | decay (linearly to 0) | two_stage (UKD alone,
                                      # then CE + KD alone, half the steps each)

    @property
    def hidden(self) -> str | None:
        """The hidden-space term of the method (pkd, alp), if it has one."""
        return METHODS[self.name].hidden

    def weights(self) -> dict[str, float]:
        """The method's loss weights, with those the recipe sets in their place."""
        defaults = METHODS[self.name].weights()
        return {k: defaults[k] if getattr(self, k) is None else getattr(self, k) for k in defaults}


@dataclass
class TrainingConfig:
    # Distillation keeps gaining after the 3 epochs that fine-tuning uses, where labels alone
    # overfit (SST-2, 8,000 examples, teacher:2: ukd 83.5 at 3 epochs, 84.3 at 6; ce 83.3, 82.7).
    epochs: int = 6
    batch_size: int | None = None    # None: DEFAULT_BATCH for the device (32 CPU, 256 GPU)
    lr: float | None = None          # None: STUDENT_LR for the student's kind, scaled to the batch
    pseudo_lr: float = 1e-3          # the student's pseudo classifiers and projections
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    seed: int = 42
    cache_teacher: bool = True       # reuse the frozen teacher's logits after their first pass
    group_by_length: bool = True     # batches of similar length: less padding, faster steps
    checkpoint_minutes: float = 5.0  # minutes between resumable checkpoints (and every epoch)
    checkpoint_every: int | None = None  # or every this many optimizer steps
    precision: str = "auto"          # auto: bf16 on CUDA and CPUs with native bf16, else fp32
    loader_workers: int | None = None  # processes collating batches; None: 4 on CUDA, 0 on CPU
    max_steps: int | None = None     # stop early, e.g. for tests


@dataclass
class Recipe:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def validate(self) -> "Recipe":
        if self.method.name not in METHODS:
            raise UserError(f"unknown method {self.method.name!r}; choose from {', '.join(METHODS)}")
        for name, choices in METHOD_CHOICES.items():
            if getattr(self.method, name) not in choices:
                raise UserError(f"method.{name} must be one of {', '.join(choices)}")
        if self.method.attention_temperature <= 0 or self.method.temperature <= 0:
            raise UserError("temperatures must be positive")
        if self.teacher.pseudo_head not in PSEUDO_HEAD_KINDS:
            raise UserError(f"pseudo head must be {' or '.join(map(repr, PSEUDO_HEAD_KINDS))}")
        if self.training.precision not in PRECISIONS:
            raise UserError(f"precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}")
        for name in ("epochs", "batch_size", "grad_accum", "checkpoint_every"):
            if getattr(self.training, name) is not None and getattr(self.training, name) < 1:
                raise UserError(f"training.{name} must be at least 1")
        if self.teacher.finetune_batch_size is not None and self.teacher.finetune_batch_size < 1:
            raise UserError("teacher.finetune_batch_size must be at least 1")
        if self.teacher.finetune_lr is not None and self.teacher.finetune_lr <= 0:
            raise UserError("teacher.finetune_lr must be positive")
        if self.training.loader_workers is not None and self.training.loader_workers < 0:
            raise UserError("training.loader_workers must be 0 or more")
        if self.training.checkpoint_minutes <= 0:
            raise UserError("training.checkpoint_minutes must be positive")
        if self.training.lr is not None and self.training.lr <= 0:
            raise UserError("training.lr must be positive")
        self._validate_vocabulary()
        if self.method.delta and self.method.hidden is None:
            hidden = ", ".join(m.name for m in METHODS.values() if m.hidden)
            raise UserError(f"delta weighs the hidden-state term, which method "
                            f"{self.method.name} does not have; use one of {hidden}")
        return self

    def _validate_vocabulary(self) -> None:
        cfg = self.student
        if cfg.vocab_size is None and cfg.tokenizer is None:
            return
        if cfg.vocab_size is not None and cfg.tokenizer is not None:
            raise UserError("give the student a vocabulary size or a tokenizer, not both")
        if not (cfg.spec.startswith("teacher:") or cfg.spec in SCRATCH_STUDENTS):
            raise UserError(f"a vocabulary of its own is for teacher:K, bilstm and cnn students; "
                            f"{cfg.spec!r} brings its own tokenizer")
        if cfg.vocab_method not in VOCAB_METHODS:
            raise UserError(f"student.vocab_method must be one of {', '.join(VOCAB_METHODS)}")
        if cfg.vocab_size is not None and cfg.vocab_size < MIN_VOCAB:
            raise UserError(f"a student vocabulary needs at least {MIN_VOCAB} tokens, "
                            f"not {cfg.vocab_size}")

    def for_device(self, device_type: str) -> "Recipe":
        """This recipe with the batch sizes and learning rates it leaves unset filled in for a
        device type ("cpu", "cuda"): what a run records in its recipe.yaml."""
        default = DEFAULT_BATCH[device_type]
        teacher, training = self.teacher, self.training
        teacher_batch = teacher.finetune_batch_size or default
        batch = training.batch_size or default
        kind = "scratch" if self.student.spec in SCRATCH_STUDENTS else "transformer"
        return (self.replace("teacher", finetune_batch_size=teacher_batch,
                             finetune_lr=teacher.finetune_lr or scaled_lr(TEACHER_LR, teacher_batch))
                .replace("training", batch_size=batch,
                         lr=training.lr or scaled_lr(STUDENT_LR[kind], batch)))

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)

    def sha256(self) -> str:
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        parts = {}
        for f in fields(cls):
            section = data.get(f.name) or {}
            if not isinstance(section, dict):
                raise UserError(f"recipe section {f.name!r} must be a mapping")
            known = {x.name for x in fields(f.default_factory)}
            unknown = set(section) - known
            if unknown:
                raise UserError(f"recipe section {f.name!r} has unknown key(s) {sorted(unknown)}; "
                                f"known: {sorted(known)}")
            parts[f.name] = f.default_factory(**section)
        extra = set(data) - {f.name for f in fields(cls)}
        if extra:
            raise UserError(f"recipe has unknown section(s) {sorted(extra)}")
        return cls(**parts).validate()

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read recipe {path}: {exc}") from None
        if not isinstance(data, dict):
            raise UserError(f"recipe {path} must be a YAML mapping")
        return cls.from_dict(data)

    def replace(self, section: str, **changes) -> "Recipe":
        """A copy with some fields of one section changed."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section),
                                                                         **changes)})
