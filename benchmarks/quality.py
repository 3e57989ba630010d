"""quality: dev metric of each method, same teacher, student, data, step budget, several seeds.

The teacher is fine-tuned once (seed 0) and fixed, so seeds vary only the student's run. Rows:
the methods on a `teacher:K` student, one cross-architecture student (BiLSTM), and a large
capacity gap (a 1-layer student), where the teacher's lower pseudo classifiers are the targets
the student's layer attends to. Goals: ukd at least 1 point above kd, and at least 97% of the
teacher's metric.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ukd_compress.pipeline import load_task, run_distill  # noqa: E402
from ukd_compress.recipe import Recipe  # noqa: E402
from ukd_compress.teacher import resolve_teacher  # noqa: E402

from .results import markdown_table, write_results  # noqa: E402

METHODS = ("ce", "kd", "pkd", "alp", "ukd", "ukd+alp")
GOAL_OVER_KD, GOAL_OF_TEACHER = 1.0, 97.0


def _metric(report: dict, who: str) -> float:
    return next(iter(next(iter(report[who]["metrics"].values())).values()))


def run(task: str = "rte", seeds: int = 3, max_train_samples: int = 2000, epochs: int = 3,
        methods: tuple[str, ...] = METHODS) -> dict:
    base = Recipe().replace("task", name=task, max_train_samples=max_train_samples)
    base = base.replace("training", epochs=epochs, seed=0)
    data = load_task(base)
    teacher = resolve_teacher(base, data.spec, data.teacher_train, data.evals)
    configs = [(f"{m}, teacher:2", "teacher:2", m) for m in methods]
    configs += [("kd, bilstm", "bilstm", "kd"), ("ukd, bilstm", "bilstm", "ukd"),
                ("kd, teacher:1", "teacher:1", "kd"), ("ukd, teacher:1", "teacher:1", "ukd")]
    work = Path(tempfile.mkdtemp(prefix="ukd-bench-quality-"))
    results, teacher_metric = {}, None
    for label, student, method in configs:
        scores = []
        for seed in range(seeds):
            recipe = (base.replace("teacher", name=teacher).replace("student", spec=student)
                      .replace("method", name=method).replace("training", seed=seed))
            out = work / f"{label.replace(', ', '-').replace(':', '')}-s{seed}"
            report = json.loads((run_distill(recipe, out, quiet=True) / "report.json").read_text())
            scores.append(_metric(report, "student"))
            teacher_metric = _metric(report, "teacher")
        results[label] = {"scores": scores, "mean": round(statistics.mean(scores), 2),
                          "std": round(statistics.stdev(scores), 2) if seeds > 1 else 0.0}
    for r in results.values():
        r["of_teacher"] = round(100 * r["mean"] / teacher_metric, 1)
    out = {"task": task, "teacher": teacher, "teacher_metric": teacher_metric, "seeds": seeds,
           "max_train_samples": max_train_samples, "epochs": epochs, "results": results}
    markdown = (f"Quality, {task} dev, teacher {teacher_metric:.2f} (fixed), {max_train_samples} "
                f"train examples, {epochs} epochs, seeds 0-{seeds - 1}\n\n"
                + markdown_table(["student, method", "mean", "std", "% of teacher", "per seed"],
                                 [[k, r["mean"], r["std"], r["of_teacher"],
                                   " ".join(f"{s:.1f}" for s in r["scores"])]
                                  for k, r in results.items()]))
    if {"ukd, teacher:2", "kd, teacher:2"} <= set(results):
        ukd = results["ukd, teacher:2"]
        out["ukd_minus_kd"] = round(ukd["mean"] - results["kd, teacher:2"]["mean"], 2)
        out["goals_met"] = {"ukd_over_kd": out["ukd_minus_kd"] >= GOAL_OVER_KD,
                            "of_teacher": ukd["of_teacher"] >= GOAL_OF_TEACHER}
        verdict = {k: "met" if v else "**missed**" for k, v in out["goals_met"].items()}
        markdown += (f"\nukd - kd: {out['ukd_minus_kd']:+.2f} points (goal >= +{GOAL_OVER_KD}: "
                     f"{verdict['ukd_over_kd']}); ukd at {ukd['of_teacher']}% of the teacher "
                     f"(goal >= {GOAL_OF_TEACHER}%: {verdict['of_teacher']})\n")
    write_results("quality", out, markdown, _figure(results, teacher_metric))
    return out


def _figure(results: dict, teacher_metric: float) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = list(results)
    ax.bar(names, [results[n]["mean"] for n in names], yerr=[results[n]["std"] for n in names],
           color=["tab:green" if n.startswith("ukd") else "tab:blue" for n in names], capsize=3)
    ax.axhline(teacher_metric, color="black", linestyle="--", linewidth=1, label="teacher")
    low = min(results[n]["mean"] - results[n]["std"] for n in names)
    ax.set_ylim(max(0, low - 5), max(teacher_metric, max(r["mean"] for r in results.values())) + 3)
    ax.set_ylabel("dev metric")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    return fig
