"""quality: a paired study of methods over seeds, tasks and budgets.

A study is rows of (task, training examples, epochs, student) and the methods to compare on each,
over seeds 0..N-1 (the study's N, or a row's own ``seeds``). A row's ``batch_size`` sets the batch
of its teacher and students (learning rates by the square-root rule); unset, the device's default.
Seeds are paired: seed s gives every method the same training sample, batch order,
initialisation and dropout, so ``ukd - kd`` at seed s compares like with like. The teacher is
fine-tuned once per (task, training examples, batch) with the default seed and then fixed.

A method is a name (``kd``) or a variant: a name with recipe knobs in brackets,
``ukd[teacher_layers=window,gamma=0.25]``; the bracket is the row's ``variant``.

Each run is a ``ukd-compress distill`` process (``--jobs`` at once, sharing the CPU cores or the
GPU). A finished run is read back from its folder, an interrupted one resumed, so a study can be
stopped and continued with the same command. Results: benchmarks/results/<name>.json (every run
as a row), .md (mean, std and the paired difference to the reference method) and .png.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ukd_compress.errors import UserError  # noqa: E402
from ukd_compress.methods import METHODS  # noqa: E402
from ukd_compress.recipe import MethodConfig, Recipe, StudentConfig  # noqa: E402

from .results import RESULTS, markdown_table, write_results  # noqa: E402

TEACHER_SEED = 42  # the CLI's default seed: the study's teacher is the one a default run makes
METHOD_KNOBS = {f for f in MethodConfig.__dataclass_fields__ if f != "name"}
STUDENT_KNOBS = {f for f in StudentConfig.__dataclass_fields__ if f != "spec"}


@dataclass(frozen=True)
class Run:
    """One student run of the study."""

    task: str
    train_examples: int | None
    epochs: int
    student: str
    method: str
    variant: str
    seed: int
    batch_size: int | None = None  # None: the device's default (recipe.DEFAULT_BATCH)

    @property
    def name(self) -> str:
        batch = f"-b{self.batch_size}" if self.batch_size else ""
        text = (f"{self.task}-{self.train_examples or 'all'}-e{self.epochs}{batch}-"
                f"{self.student}-{self.method}-{self.variant or 'default'}-s{self.seed}")
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)

    @property
    def budget(self) -> tuple:
        """What fixes the study's teacher: the task, its training examples and the batch."""
        return (self.task, self.train_examples, self.batch_size)


def parse_knobs(token: str, body: str, known: set[str]) -> dict:
    """``gamma=0.25,teacher_layers=window`` -> {"gamma": 0.25, "teacher_layers": "window"}."""
    knobs = {}
    for part in filter(None, body.split(",")):
        key, _, value = part.partition("=")
        if key not in known or not value:
            raise UserError(f"{token!r}: {part!r} is not KNOB=VALUE with a knob among "
                            f"{', '.join(sorted(known))}")
        knobs[key] = yaml.safe_load(value)
    return knobs


def parse_method(token: str) -> tuple[str, str, dict]:
    """``ukd[gamma=0.25,teacher_layers=window]`` -> ("ukd", "gamma=0.25,teacher_layers=window",
    {"gamma": 0.25, "teacher_layers": "window"})."""
    match = re.fullmatch(r"([a-z+]+)(?:\[(.*)\])?", token.strip())
    if not match or match.group(1) not in METHODS:
        raise UserError(f"method {token!r}: write a method ({', '.join(METHODS)}) with optional "
                        "knobs in brackets, e.g. ukd[teacher_layers=window]")
    body = match.group(2) or ""
    return match.group(1), body, parse_knobs(token, body, METHOD_KNOBS)


def parse_student(token: str) -> tuple[str, dict]:
    """``teacher:2[vocab_size=8000]`` -> ("teacher:2", {"vocab_size": 8000})."""
    match = re.fullmatch(r"([^\[\]]+)(?:\[(.*)\])?", token.strip())
    if not match:
        raise UserError(f"student {token!r}: write a student with optional knobs in brackets, "
                        "e.g. teacher:2[vocab_size=8000]")
    return match.group(1), parse_knobs(token, match.group(2) or "", STUDENT_KNOBS)


def load_study(path: Path | None, overrides: dict) -> dict:
    """A study: the YAML file (or the default study) with command-line settings on top."""
    study = {"seeds": 3, "rows": [{"task": "sst2", "train_examples": 8000, "epochs": 6,
                                   "students": ["teacher:2"], "methods": ["ce", "kd", "ukd"]}]}
    if path is not None:
        try:
            study = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read study {path}: {exc}") from None
    if overrides.get("seeds") is not None:  # the command line's seeds win over every row's
        study["seeds"] = overrides["seeds"]
        study["rows"] = [{k: v for k, v in row.items() if k != "seeds"} for row in study["rows"]]
    row_overrides = {k: v for k, v in overrides.items() if k != "seeds" and v is not None}
    if row_overrides:
        study["rows"] = [{**row, **row_overrides} for row in study["rows"]]
    return study


def study_runs(study: dict) -> list[Run]:
    runs = []
    for row in study["rows"]:
        for student in row["students"]:
            parse_student(student)  # a typo fails before any run starts
            for token in row["methods"]:
                method, variant, _ = parse_method(token)
                for seed in range(row.get("seeds", study["seeds"])):
                    runs.append(Run(row["task"], row.get("train_examples"), row["epochs"],
                                    student, method, variant, seed, row.get("batch_size")))
    return runs


def base_recipe(run: Run, data_dir: str | None) -> Recipe:
    from ukd_compress.distill import device_type

    everything = sys.maxsize  # train_examples 0 or None: the whole training set, on CPU too
    return (Recipe().replace("task", name=run.task, data_dir=data_dir,
                             max_train_samples=run.train_examples or everything)
            .replace("teacher", finetune_batch_size=run.batch_size)
            .replace("training", epochs=run.epochs, seed=TEACHER_SEED, batch_size=run.batch_size)
            .for_device(device_type()))


def resolve_teachers(runs: list[Run], data_dir: str | None) -> dict[tuple, str]:
    """The fixed teacher of each (task, budget): fine-tuned now if not cached."""
    import datasets

    from ukd_compress.pipeline import training_data
    from ukd_compress.teacher import resolve_teacher

    datasets.disable_progress_bars()

    teachers = {}
    for run in runs:
        key = run.budget
        if key not in teachers:
            recipe = base_recipe(run, data_dir)
            data = training_data(recipe)
            teachers[key] = resolve_teacher(recipe, data.spec, data.teacher_train, data.evals)
    return teachers


def run_recipe(run: Run, teacher: str, data_dir: str | None) -> Recipe:
    _, _, knobs = parse_method(f"{run.method}[{run.variant}]")
    spec, student_knobs = parse_student(run.student)
    recipe = (base_recipe(run, data_dir).replace("teacher", name=teacher)
              .replace("student", spec=spec, **student_knobs)
              .replace("method", name=run.method, **knobs)
              .replace("training", seed=run.seed))
    return recipe.validate()


def execute(run: Run, recipe: Recipe, folder: Path, threads: int) -> dict:
    """The run's report: read back if finished, else run (or resume) it in its own process."""
    report = folder / run.name / "report.json"
    if not report.is_file():
        partial = folder / f"{run.name}.partial"
        recipe_file = folder / f"{run.name}.yaml"
        recipe_file.write_text(recipe.to_yaml())
        args = (["--resume", str(partial)] if (partial / "recipe.yaml").is_file()
                else ["--recipe", str(recipe_file), "--output", str(folder / run.name)])
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        with open(folder / f"{run.name}.log", "w") as log:
            done = subprocess.run([sys.executable, "-m", "ukd_compress", "distill", "--quiet",
                                   *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        if done.returncode != 0:
            tail = (folder / f"{run.name}.log").read_text().strip().splitlines()[-1:] or ["?"]
            raise RuntimeError(f"{run.name}: exit {done.returncode}: {tail[0][:300]}")
    return json.loads(report.read_text())


def primary(metrics: dict) -> float:
    return next(iter(next(iter(metrics.values())).values()))


def run_study(study: dict, folder: Path, jobs: int = 1, name: str = "quality",
              reference: str = "kd", data_dir: str | None = None,
              results_dir: Path = RESULTS) -> dict:
    """Run every run of the study not yet finished; write the results; return them."""
    runs = study_runs(study)
    folder.mkdir(parents=True, exist_ok=True)
    teachers = resolve_teachers(runs, data_dir)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    rows, failures = [], []
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool, \
            tqdm(total=len(runs), desc="quality study", unit="run") as bar:
        # seed by seed, so that a study stopped early holds complete pairs
        futures = {pool.submit(execute, run, run_recipe(run, teachers[run.budget], data_dir),
                               folder, threads): run
                   for run in sorted(runs, key=lambda run: run.seed)}
        for future in concurrent.futures.as_completed(futures):
            run = futures[future]
            bar.update(1)
            try:
                report = future.result()
            except RuntimeError as exc:
                failures.append(str(exc))
                tqdm.write(f"failed: {exc}")
                continue
            rows.append({**run.__dict__, "metric": round(primary(report["student"]["metrics"]), 2),
                         "teacher_metric": round(primary(report["teacher"]["metrics"]), 2),
                         "per_epoch": [round(primary(h["eval"]), 2) for h in report["history"]],
                         "wall_seconds": report["wall_seconds"], "device": report["device"],
                         "examples_per_s": report.get("training", {}).get("examples_per_s")})
    order = {run.name: i for i, run in enumerate(runs)}
    rows.sort(key=lambda r: order[Run(**{k: r[k] for k in Run.__dataclass_fields__}).name])
    result = summarise(rows, reference)
    result["failures"] = failures
    write_results(name, result, markdown(result, reference), figure(result, reference),
                  results_dir)
    return result


def _label(row: dict) -> str:
    return row["method"] + (f"[{row['variant']}]" if row["variant"] else "")


def _group(row: dict) -> str:
    batch = f", batch {row['batch_size']}" if row.get("batch_size") else ""
    return (f"{row['task']}, {row['train_examples'] or 'all'} ex, {row['epochs']} ep{batch}, "
            f"{row['student']}")


def summarise(rows: list[dict], reference: str) -> dict:
    """Mean and std per (group, method), and each method's paired difference to ``reference``."""
    teacher, groups = {}, {}
    for row in rows:
        budgets = {(r["train_examples"], r.get("batch_size")) for r in rows
                   if r["task"] == row["task"]}
        batch = f"/b{row['batch_size']}" if row.get("batch_size") else ""
        key = (row["task"] if len(budgets) == 1
               else f"{row['task']}@{row['train_examples'] or 'all'}{batch}")
        teacher[key] = row["teacher_metric"]
        groups.setdefault(_group(row), {}).setdefault(_label(row), {})[row["seed"]] = row
    summary = []
    for group, methods in groups.items():
        ref = methods.get(reference, {})
        for label, by_seed in methods.items():
            scores = {seed: r["metric"] for seed, r in sorted(by_seed.items())}
            paired = {seed: round(m - ref[seed]["metric"], 2) for seed, m in scores.items()
                      if seed in ref}
            diffs = list(paired.values())
            teacher_metric = next(iter(by_seed.values()))["teacher_metric"]
            summary.append({
                "group": group, "method": label, "scores": scores,
                "mean": round(statistics.mean(scores.values()), 2),
                "std": round(statistics.stdev(scores.values()), 2) if len(scores) > 1 else 0.0,
                "of_teacher": round(100 * statistics.mean(scores.values()) / teacher_metric, 1),
                "paired": paired,
                "paired_mean": round(statistics.mean(diffs), 2) if diffs else None,
                "paired_std": round(statistics.stdev(diffs), 2) if len(diffs) > 1 else None,
                "wins": sum(d > 0 for d in diffs)})
    return {"teacher": teacher, "reference": reference, "rows": rows, "summary": summary}


def markdown(result: dict, reference: str) -> str:
    header = ["group", "method", "mean", "std", "% of teacher", f"- {reference}, paired",
              "wins", "per seed"]
    table = []
    for s in result["summary"]:
        versus = s["paired_mean"] is not None and s["method"] != reference
        table.append([s["group"], s["method"], f"{s['mean']:.2f}", f"{s['std']:.2f}",
                      s["of_teacher"],
                      f"{s['paired_mean']:+.2f} ± {s['paired_std'] or 0:.2f}" if versus else "",
                      f"{s['wins']}/{len(s['paired'])}" if versus else "",
                      " ".join(f"{m:.2f}" for m in s["scores"].values())])
    teachers = ", ".join(f"{k} {v:.2f}" for k, v in result["teacher"].items())
    return (f"Quality study, dev metric of the best epoch; teachers: {teachers}. Paired: seed s "
            "gives every method the same sample, order and initialisation; ± is the std of the "
            "per-seed differences.\n\n" + markdown_table(header, table))


def figure(result: dict, reference: str) -> plt.Figure:
    """Per group and method, the paired difference to the reference: a bar, a dot per seed."""
    shown = [s for s in result["summary"] if s["paired"] and s["method"] != reference]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(shown) + 1.5))
    for y, s in enumerate(shown):
        ax.barh(y, s["paired_mean"], color="tab:green" if s["paired_mean"] > 0 else "tab:red",
                alpha=0.5)
        ax.plot(list(s["paired"].values()), [y] * len(s["paired"]), "k.")
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(range(len(shown)), [f"{s['group']}: {s['method']}" for s in shown], fontsize=7)
    ax.set_xlabel(f"dev metric minus {reference}'s at the same seed (points)")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig
