"""infer: teacher PyTorch vs student PyTorch vs student ONNX Runtime fp32 and int8.

Batch 1 and 32 at sequence length 128, all timed in one run on this machine. Each row also
states the FLOPs the model needs (an encoder's matrix products: 2 x (4 d^2 + 2 d d_ff) x tokens
per layer, plus 4 s^2 d for attention) and the floor that sets at this machine's measured fp32
matmul rate, so a reader sees how far from the machine's limit a figure is.
Goal: the student on ONNX Runtime at least 5x faster than the teacher at batch 1 on CPU.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformers import AutoConfig  # noqa: E402

from ukd_compress.export.latency import measure_all  # noqa: E402

from .results import markdown_table, write_results  # noqa: E402

GOAL_SPEEDUP = 5.0


def encoder_flops(config, batch: int, seq_len: int) -> float | None:
    """Forward FLOPs of a BERT-like encoder (None for BiLSTM/CNN students)."""
    d = getattr(config, "hidden_size", None)
    d_ff = getattr(config, "intermediate_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not (d and d_ff and layers) or config.model_type.startswith("ukd_"):
        return None
    per_layer = 2 * (4 * d * d + 2 * d * d_ff) * seq_len + 4 * seq_len * seq_len * d
    return float(batch * layers * per_layer)


def matmul_flops_per_s(size: int = 1024, repeats: int = 20) -> float:
    """This machine's fp32 matmul rate (FLOP/s): the ceiling the floors are computed against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def run(run_dir: Path, batches: tuple[int, ...] = (1, 32), seq_len: int = 128,
        repeats: int = 20) -> dict:
    report = json.loads((run_dir / "report.json").read_text())
    onnx = run_dir / "onnx"
    models = {"teacher (pytorch)": Path(report["teacher"]["name"]),
              "student (pytorch)": run_dir / "student",
              "student (ort fp32)": onnx / "model.onnx"}
    if (onnx / "model_int8.onnx").is_file():
        models["student (ort int8)"] = onnx / "model_int8.onnx"
    from .serve import dev_payloads

    texts = [p.get("texts", [" "])[0] for p in dev_payloads(run_dir, 64)]
    rows = measure_all(models, texts, list(batches), [seq_len], repeats=repeats)
    peak = matmul_flops_per_s()
    configs = {"teacher": AutoConfig.from_pretrained(models["teacher (pytorch)"]),
               "student": AutoConfig.from_pretrained(run_dir / "student")}
    for row in rows:
        flops = encoder_flops(configs[row["model"].split()[0]], row["batch"], row["seq_len"])
        row["gflops"] = flops and round(flops / 1e9, 3)
        row["floor_ms"] = flops and round(1000 * flops / peak, 3)
        row["over_floor"] = flops and round(row["p50_ms"] / row["floor_ms"], 2)
    p50 = {(r["model"], r["batch"]): r["p50_ms"] for r in rows}
    speedups = {f"{m} batch {b}": round(p50[("teacher (pytorch)", b)] / p50[(m, b)], 2)
                for (m, b) in p50 if m.startswith("student (ort")}
    best = max(v for k, v in speedups.items() if k.endswith("batch 1"))
    data = {"run_dir": str(run_dir), "rows": rows, "matmul_gflops_per_s": round(peak / 1e9, 1),
            "speedup_over_teacher": speedups, "goal": f">= {GOAL_SPEEDUP}x at batch 1",
            "goal_met": best >= GOAL_SPEEDUP}
    table = [[r["model"], r["batch"], r["seq_len"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
              r["gflops"], r["floor_ms"], r["over_floor"]] for r in rows]
    markdown = (f"Inference, `{run_dir.name}`, {rows[0]['threads']} threads; floor = FLOPs at "
                f"this machine's fp32 matmul rate ({data['matmul_gflops_per_s']} GFLOP/s)\n\n"
                + markdown_table(["model", "batch", "seq", "p50 ms", "p99 ms", "GFLOPs",
                                  "floor ms", "x floor"], table)
                + "\nspeedup over the teacher (p50): "
                + ", ".join(f"{k} {v}x" for k, v in speedups.items())
                + f"; goal {data['goal']}: " + ("met" if data["goal_met"] else "**missed**") + "\n")
    write_results("infer", data, markdown, _figure(rows, batches))
    return data


def _figure(rows: list[dict], batches: tuple[int, ...]) -> plt.Figure:
    fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 3.2))
    for ax, batch in zip(axes if len(batches) > 1 else [axes], batches):
        chosen = [r for r in rows if r["batch"] == batch]
        ax.barh([r["model"] for r in chosen], [r["p50_ms"] for r in chosen], color="tab:blue")
        ax.set_xlabel("p50 latency (ms)")
        ax.set_title(f"batch {batch}, seq {chosen[0]['seq_len']}")
        ax.invert_yaxis()
    return fig
