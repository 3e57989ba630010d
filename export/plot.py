"""latency.png: p50 latency per model for each batch size and sequence length."""

from __future__ import annotations

from pathlib import Path

from ukd_compress.report import plt, save_figure


def plot_latency(rows: list[dict], path: Path, budget_ms: float | None = None) -> None:
    shapes = sorted({(r["batch"], r["seq_len"]) for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 4), squeeze=False)
    for ax, (batch, seq_len) in zip(axes[0], shapes):
        values = {r["model"]: r["p50_ms"] for r in rows if (r["batch"], r["seq_len"]) == (batch, seq_len)}
        ax.bar(range(len(models)), [values.get(m, 0) for m in models],
               color=["tab:gray", "tab:blue", "tab:green", "tab:olive"][:len(models)])
        ax.set_xticks(range(len(models)), [m.replace(" (", "\n(") for m in models], fontsize=8)
        ax.set(ylabel="p50 latency (ms)", title=f"batch {batch}, {seq_len} tokens")
        if budget_ms is not None:
            ax.axhline(budget_ms, color="red", linestyle="--", label=f"budget {budget_ms} ms")
            ax.legend()
    save_figure(fig, path)
