"""``ukd-compress export RUN_DIR``: ONNX, parity, optional int8, latency against a budget.

Nothing in the run folder changes unless every step succeeds: the new ``onnx/`` is built as
``onnx.tmp/`` and renamed over the old one, latency.json and report.json are written beside and
renamed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoTokenizer

from ukd_compress.errors import UserError
from ukd_compress.pipeline import load_task
from ukd_compress.recipe import Recipe
from ukd_compress.report import write_json
from ukd_compress.tasks import compute_metrics

from .latency import measure_all
from .onnx_export import export_student, ort_logits, ort_session, parity
from .plot import plot_latency


def onnx_metric(onnx_path: Path, texts: list[str], pairs: list[str] | None, labels: np.ndarray,
                spec, max_length: int) -> dict[str, float]:
    """The task metric of an ONNX model on the dev examples."""
    session = ort_session(onnx_path)
    tokenizer = AutoTokenizer.from_pretrained(onnx_path.parent)
    logits = []
    for start in range(0, len(texts), 32):
        b = slice(start, start + 32)
        enc = tokenizer(texts[b], pairs[b] if pairs else None, padding=True, truncation=True,
                        max_length=max_length, return_tensors="np")
        logits.append(ort_logits(session, dict(enc)))
    return compute_metrics(spec, np.concatenate(logits), labels)


def export_run(run_dir: Path, opset: int = 18, int8: bool = False, budget_ms: float | None = None,
               batches: list[int] = (1,), seq_lens: list[int] = (128,), repeats: int = 20) -> dict:
    """Export, check and time the run's student; returns what goes into report.json."""
    student = run_dir / "student"
    if not (student / "config.json").is_file() or not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir} is not a finished run folder (no student/ or recipe.yaml); "
                        "run `ukd-compress distill` first")
    report = json.loads((run_dir / "report.json").read_text())
    recipe = Recipe.from_yaml(run_dir / "recipe.yaml")
    data = load_task(recipe)
    dev = next(iter(data.evals.values()))
    texts, pairs = dev["text_a"], None if dev[0]["text_b"] is None else dev["text_b"]
    labels = np.array(dev["label"])

    tmp = run_dir / "onnx.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # one max_length from training to the parity check, the metric, io.json and the server
        max_length = recipe.task.max_length
        export_student(student, tmp, opset, {"task": data.spec.name, "pairs": pairs is not None,
                                             "max_length": max_length})
        result = {"opset": opset, "max_length": max_length,
                  "parity": parity(student, tmp / "model.onnx", texts, pairs, max_length),
                  "graph_optimization_level": "ORT_ENABLE_ALL",
                  "metric_fp32": onnx_metric(tmp / "model.onnx", texts, pairs, labels, data.spec,
                                             max_length)}
        if int8:
            quantize_dynamic(tmp / "model.onnx", tmp / "model_int8.onnx", weight_type=QuantType.QInt8)
            result["metric_int8"] = onnx_metric(tmp / "model_int8.onnx", texts, pairs, labels,
                                                data.spec, max_length)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = run_dir / "onnx"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    result["onnx_bytes"] = {name: (final / f"model{suffix}.onnx").stat().st_size
                            for name, suffix in (("fp32", ""), ("int8", "_int8"))
                            if (final / f"model{suffix}.onnx").is_file()}
    teacher_weights = sum(f.stat().st_size
                          for f in Path(report["teacher"]["name"]).glob("*.safetensors"))
    if teacher_weights:  # a local teacher: how the files compare with its weights (fp32)
        result["onnx_of_teacher_weights"] = {name: round(size / teacher_weights, 3)
                                             for name, size in result["onnx_bytes"].items()}

    models = {"teacher (pytorch)": Path(report["teacher"]["name"]),
              "student (pytorch)": student, "student (ort fp32)": final / "model.onnx"}
    if int8:
        models["student (ort int8)"] = final / "model_int8.onnx"
    if not (models["teacher (pytorch)"] / "config.json").is_file():
        del models["teacher (pytorch)"]  # a hub teacher: time what is on disk
    rows = measure_all(models, texts[:64], list(batches), list(seq_lens), repeats=repeats)
    latency = {"rows": rows, "budget_ms": budget_ms, "threads": rows[0]["threads"]}
    teacher_rows = {(r["batch"], r["seq_len"]): r for r in rows if r["model"].startswith("teacher")}
    student_rows = [r for r in rows if r["model"] == "student (ort fp32)"]
    latency["speedup_ort_fp32_over_teacher"] = {
        f"batch{r['batch']}_seq{r['seq_len']}": teacher_rows[(r["batch"], r["seq_len"])]["p50_ms"]
        / r["p50_ms"] for r in student_rows if (r["batch"], r["seq_len"]) in teacher_rows}
    if budget_ms is not None:
        worst = max(r["p95_ms"] for r in student_rows)
        latency["within_budget"] = worst <= budget_ms
        latency["student_p95_ms"] = worst
    write_json(run_dir / "latency.json", latency)
    plot_latency(rows, run_dir / "latency.png", budget_ms)
    report["export"] = {**result, "latency": latency}
    write_json(run_dir / "report.json", report)
    return report["export"]
