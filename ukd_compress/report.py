"""report.png: the student's dev metric per epoch against the teacher's, and how well each
teacher layer's pseudo classifier does (the cheap teacher assistants); files written whole."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_report(report: dict, path: Path) -> None:
    split = next(iter(report["teacher"]["metrics"]))
    metric = next(iter(report["teacher"]["metrics"][split]))
    teacher_score = report["teacher"]["metrics"][split][metric]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] + 1 for h in report["history"]]
    left.plot(epochs, [h["eval"][split][metric] for h in report["history"]], "o-",
              label=f"student ({report['method']['name']})")
    left.axhline(teacher_score, color="gray", linestyle="--", label="teacher")
    left.set(xlabel="epoch", ylabel=f"{split} {metric}", title="student during training")
    left.legend()
    layers = [m[metric] for m in report["teacher"]["pseudo_classifier_metrics"][split]]
    right.bar(range(1, len(layers) + 1), layers, color="tab:orange")
    right.axhline(teacher_score, color="gray", linestyle="--", label="teacher final head")
    right.set(xlabel="teacher layer", ylabel=f"{split} {metric}",
              title="teacher pseudo classifiers", ylim=(min(layers + [teacher_score]) - 5, None))
    right.legend()
    save_figure(fig, path)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` beside ``path``, then rename it into place: readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def write_json(path: Path, data: dict, indent: int | None = 1) -> None:
    write_text(path, json.dumps(data, indent=indent))


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Save a figure as PNG beside ``path``, then rename it into place."""
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.rename(path)
