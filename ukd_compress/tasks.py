"""Task registry: GLUE names -> text columns, labels, metric; GLUE TSV folders; local CSV/JSONL.

Data comes from, in order: a folder in GLUE's own TSV layout (``--data-dir`` or ``UKD_DATA_DIR``,
else a few usual places), local files (``--train-file``/``--eval-file``), or the hub's GLUE
(``datasets.load_dataset("glue", name)``). Every loaded split has the columns ``text_a``,
``text_b`` (None for single-sentence tasks), ``label`` and ``idx``, and keeps the raw text so a
student may tokenize it with its own tokenizer.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .errors import UserError
from .recipe import Recipe

DEFAULT_DATA_DIRS = ("glue_data", "../shared/data/glue_data", "~/glue_data")


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its columns, labels, metric and where its GLUE TSV files live."""

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...]
    metric: str  # accuracy | f1 | mcc | pearson
    eval_splits: tuple[str, ...] = ("validation",)
    glue_dir: str = ""
    tsv_files: dict[str, str] = field(default_factory=dict)
    # TSV column name (or index for header-less files) for each of text_a, text_b, label
    tsv_columns: tuple = ()
    tsv_header: bool = True

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


GLUE_TASKS: dict[str, TaskSpec] = {
    "mnli": TaskSpec(
        "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "accuracy",
        ("validation_matched", "validation_mismatched"), "MNLI",
        {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
         "validation_mismatched": "dev_mismatched.tsv"},
        ("sentence1", "sentence2", "gold_label")),
    "sst2": TaskSpec(
        "sst2", ("sentence",), ("negative", "positive"), "accuracy", ("validation",), "SST-2",
        {"train": "train.tsv", "validation": "dev.tsv"}, ("sentence", None, "label")),
    "qnli": TaskSpec(
        "qnli", ("question", "sentence"), ("entailment", "not_entailment"), "accuracy",
        ("validation",), "QNLI", {"train": "train.tsv", "validation": "dev.tsv"},
        ("question", "sentence", "label")),
    "qqp": TaskSpec(
        "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), "f1", ("validation",),
        "QQP", {"train": "train.tsv", "validation": "dev.tsv"},
        ("question1", "question2", "is_duplicate")),
    "rte": TaskSpec(
        "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy",
        ("validation",), "RTE", {"train": "train.tsv", "validation": "dev.tsv"},
        ("sentence1", "sentence2", "label")),
    "mrpc": TaskSpec(
        "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1",
        ("validation",), "MRPC", {"train": "train.tsv", "validation": "dev.tsv"},
        ("#1 String", "#2 String", "Quality")),
    "cola": TaskSpec(
        "cola", ("sentence",), ("unacceptable", "acceptable"), "mcc", ("validation",), "CoLA",
        {"train": "train.tsv", "validation": "dev.tsv"}, (3, None, 1), tsv_header=False),
    "stsb": TaskSpec(
        "stsb", ("sentence1", "sentence2"), ("score",), "pearson", ("validation",), "STS-B",
        {"train": "train.tsv", "validation": "dev.tsv"}, ("sentence1", "sentence2", "score")),
}


def get_task(name: str) -> TaskSpec:
    """The GLUE task called ``name``, or a clear error listing the known ones."""
    try:
        return GLUE_TASKS[name.lower().replace("-", "")]
    except KeyError:
        raise UserError(
            f"unknown task {name!r}; known GLUE tasks: {', '.join(GLUE_TASKS)} "
            "(or pass --train-file/--eval-file for your own CSV/JSONL data)") from None


def find_data_dir(data_dir: str | None = None) -> Path | None:
    """The GLUE-layout folder to read: the one given, else ``UKD_DATA_DIR``, else a usual place."""
    given = data_dir or os.environ.get("UKD_DATA_DIR")
    if given:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise UserError(f"GLUE data folder {given} does not exist")
        return path
    for candidate in DEFAULT_DATA_DIRS:
        path = Path(candidate).expanduser()
        if path.is_dir():
            return path
    return None


def offline_tasks(data_dir: Path | None) -> list[str]:
    """GLUE tasks whose TSV files are present in ``data_dir``."""
    if data_dir is None:
        return []
    return [name for name, spec in GLUE_TASKS.items()
            if all((data_dir / spec.glue_dir / f).is_file() for f in spec.tsv_files.values())]


def _label_to_id(spec_labels: tuple[str, ...], value) -> float | int:
    if len(spec_labels) == 1:
        return float(value)
    text = str(value).strip()
    if text in spec_labels:
        return spec_labels.index(text)
    return int(float(text))


def _normalise(ds: datasets.Dataset, cols: tuple, labels: tuple[str, ...]) -> datasets.Dataset:
    """Rename a split's columns to text_a/text_b/label/idx and map labels to ids."""
    col_a, col_b, col_label = cols

    def convert(row, i):
        return {"text_a": str(row[col_a] or ""),
                "text_b": None if col_b is None else str(row[col_b] or ""),
                "label": _label_to_id(labels, row[col_label]), "idx": i}

    features = datasets.Features({
        "text_a": datasets.Value("string"), "text_b": datasets.Value("string"),
        "label": datasets.Value("float32" if len(labels) == 1 else "int64"),
        "idx": datasets.Value("int64")})
    converted = ds.map(convert, with_indices=True, remove_columns=ds.column_names,
                       features=features)
    return converted.filter(lambda r: r["text_a"] != "" and r["label"] is not None)


def _read_tsv(path: Path, spec: TaskSpec) -> datasets.Dataset:
    # GLUE's TSVs contain unbalanced quote characters: read them with quoting off.
    kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    if not spec.tsv_header:
        kwargs.update(header=None, column_names=[str(i) for i in range(4)])
    ds = datasets.load_dataset("csv", data_files=str(path), split="train", **kwargs)
    cols = tuple(None if c is None else str(c) for c in spec.tsv_columns)
    missing = [c for c in cols if c is not None and c not in ds.column_names]
    if missing:
        raise UserError(f"{path} lacks the column(s) {missing}; GLUE's {spec.name} layout expected")
    return _normalise(ds, cols, spec.label_names)


def load_glue(spec: TaskSpec, data_dir: Path | None) -> dict[str, datasets.Dataset]:
    """Train and eval splits of a GLUE task, from a GLUE TSV folder or else the hub."""
    if data_dir is not None and spec.name in offline_tasks(data_dir):
        folder = data_dir / spec.glue_dir
        return {split: _read_tsv(folder / fname, spec) for split, fname in spec.tsv_files.items()}
    try:
        hub = datasets.load_dataset("glue", spec.name)
    except Exception as exc:  # the hub raises many types when offline
        where = f"in {data_dir}" if data_dir else "(no GLUE folder found; pass --data-dir or set UKD_DATA_DIR)"
        raise UserError(
            f"GLUE {spec.name!r} is neither {where} nor reachable on the hub "
            f"({type(exc).__name__}); tasks that work offline here: "
            f"{', '.join(offline_tasks(data_dir)) or 'none'}") from None
    cols = (*spec.text_columns, None)[:2] + ("label",)
    return {split: _normalise(hub[split], cols, spec.label_names)
            for split in ("train", *spec.eval_splits)}


def load_files(train_file: str, eval_file: str, text_columns: tuple[str, ...],
               label_column: str) -> tuple[TaskSpec, dict[str, datasets.Dataset]]:
    """A task defined by local CSV/TSV/JSONL files; labels are the sorted distinct label values."""
    splits = {}
    for split, path in (("train", train_file), ("validation", eval_file)):
        suffix = Path(path).suffix.lower()
        if not Path(path).is_file():
            raise UserError(f"data file {path} does not exist")
        kind, kwargs = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t"}),
                        ".json": ("json", {}), ".jsonl": ("json", {})}.get(suffix, (None, {}))
        if kind is None:
            raise UserError(f"{path}: use .csv, .tsv, .json or .jsonl")
        header_lines = 1 if kind == "csv" else 0
        with open(path, encoding="utf-8", errors="replace") as f:
            if sum(1 for line in f if line.strip()) <= header_lines:
                raise UserError(f"{path} is empty: it holds no examples")
        try:
            splits[split] = datasets.load_dataset(kind, data_files=path, split="train", **kwargs)
        except Exception as exc:
            raise UserError(f"could not parse {path}: {str(exc).splitlines()[0][:200]}") from None
    for split, ds in splits.items():
        missing = [c for c in (*text_columns, label_column) if c not in ds.column_names]
        if missing:
            raise UserError(f"{split} file lacks column(s) {missing}; it has {ds.column_names}")
    values = sorted({str(v) for ds in splits.values() for v in ds[label_column]})
    numeric = all(_is_float(v) for v in values)
    regression = numeric and any(not float(v).is_integer() for v in values)
    labels = ("score",) if regression else tuple(values)
    spec = TaskSpec(Path(train_file).stem, text_columns, labels,
                    "pearson" if regression else "accuracy")
    cols = (text_columns[0], text_columns[1] if len(text_columns) > 1 else None, label_column)
    if not regression:
        splits = {s: ds.map(lambda r: {label_column: str(r[label_column])}) for s, ds in splits.items()}
    return spec, {s: _normalise(ds, cols, labels) for s, ds in splits.items()}


@dataclass
class TaskData:
    spec: TaskSpec
    train: datasets.Dataset            # what the student learns from
    evals: dict[str, datasets.Dataset]
    source: str
    teacher_train: datasets.Dataset    # what a teacher fine-tuned here learns from
    all_train: datasets.Dataset        # the whole training split: a student vocabulary's texts


def subsample(split: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """At most ``limit`` examples, a seeded random subset; ``idx`` is renumbered 0..n-1."""
    if limit is not None and limit < len(split):
        split = split.shuffle(seed=seed).select(range(limit))
    return split.map(lambda _, i: {"idx": i}, with_indices=True)


def _load_splits(recipe: Recipe) -> tuple[TaskSpec, dict[str, datasets.Dataset], str]:
    """The task's spec, its whole splits, and a one-line source."""
    cfg = recipe.task
    if cfg.train_file or cfg.eval_file:
        if not (cfg.train_file and cfg.eval_file):
            raise UserError("pass both --train-file and --eval-file")
        spec, splits = load_files(cfg.train_file, cfg.eval_file, tuple(cfg.text_columns),
                                  cfg.label_column)
        return spec, splits, f"files {cfg.train_file}, {cfg.eval_file}"
    spec = get_task(cfg.name)
    data_dir = find_data_dir(cfg.data_dir)
    splits = load_glue(spec, data_dir)
    local = data_dir is not None and spec.name in offline_tasks(data_dir)
    return spec, splits, f"GLUE folder {data_dir}" if local else "hub glue"


def _evals(spec: TaskSpec, splits: dict[str, datasets.Dataset], recipe: Recipe
           ) -> dict[str, datasets.Dataset]:
    evals = {name: subsample(splits[name], recipe.task.max_eval_samples, recipe.training.seed)
             for name in spec.eval_splits}
    for name, split in evals.items():
        if len(split) == 0:
            raise UserError(f"the {name} split of {spec.name} is empty")
    return evals


def load_evals(recipe: Recipe) -> tuple[TaskSpec, dict[str, datasets.Dataset]]:
    """The task's spec and eval splits as a run of ``recipe`` evaluates on (for export's checks
    and the benchmarks: no training split is sampled)."""
    spec, splits, _ = _load_splits(recipe)
    return spec, _evals(spec, splits, recipe)


def load_task(recipe: Recipe, default_limit: int | None = None) -> TaskData:
    """The task's spec and splits, the training split subsampled to the recipe's
    ``max_train_samples``, else to ``default_limit`` (None: all of it)."""
    spec, splits, source = _load_splits(recipe)
    limit = recipe.task.max_train_samples or default_limit
    train = subsample(splits["train"], limit, recipe.training.seed)
    if len(train) == 0:
        raise UserError(f"the train split of {spec.name} is empty")
    # With a subset, a teacher fine-tuned here sees another random subset: soft labels of
    # examples it memorised are close to one-hot and would teach the student little beyond CE.
    teacher_train = subsample(splits["train"], limit, recipe.training.seed + 1)
    return TaskData(spec, train, _evals(spec, splits, recipe), source, teacher_train,
                    splits["train"])


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def compute_metrics(spec: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics (in percent), with ``spec.metric`` first."""
    if spec.is_regression:
        preds = logits.reshape(-1)
        return {"pearson": 100 * float(pearsonr(preds, labels)[0]),
                "spearman": 100 * float(spearmanr(preds, labels)[0])}
    preds = logits.argmax(-1)
    out = {"accuracy": 100 * float(accuracy_score(labels, preds))}
    if spec.metric == "f1":
        out = {"f1": 100 * float(f1_score(labels, preds)), **out}
    if spec.metric == "mcc":
        out = {"mcc": 100 * float(matthews_corrcoef(labels, preds)), **out}
    return out


def selection_score(spec: TaskSpec, metrics: dict[str, float]) -> float:
    """The number that picks the best checkpoint, as GLUE scores the task: the mean of F1 and
    accuracy, or of Pearson and Spearman; else the task's one metric. F1 alone rewards a
    student that collapses to always saying the positive class."""
    if spec.metric in ("f1", "pearson"):
        return sum(metrics.values()) / len(metrics)
    return metrics[spec.metric]


def trivial_baseline(spec: TaskSpec, train_labels: np.ndarray, eval_labels: np.ndarray
                     ) -> dict[str, float]:
    """The metrics of a constant guess: the training set's majority class, or for regression
    its mean (whose correlation with any label is 0)."""
    if spec.is_regression:
        return {"pearson": 0.0, "spearman": 0.0}
    majority = np.bincount(train_labels.astype(int), minlength=spec.num_labels).argmax()
    logits = np.zeros((len(eval_labels), spec.num_labels))
    logits[:, majority] = 1.0
    return compute_metrics(spec, logits, eval_labels)
