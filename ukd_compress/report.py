"""report.png: the student's dev metric per epoch against the teacher's, and how well each
teacher layer's pseudo classifier does (the cheap teacher assistants)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .files import write_with  # noqa: E402


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


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Save a figure as PNG beside ``path``, then rename it into place."""
    fig.tight_layout()
    try:
        write_with(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".tmp.png")
    finally:
        plt.close(fig)
