"""``ukd-compress export RUN_DIR``: ONNX, parity, optional int8, latency against a budget.

Nothing in the run folder changes unless every step succeeds: the new ``onnx/`` is built as
``onnx.tmp/`` and renamed over the old one, latency.json and report.json are written beside and
renamed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

from ukd_compress.errors import UserError
from ukd_compress.files import replace_folder, write_json
from ukd_compress.run_folder import RunFolder
from ukd_compress.tasks import compute_metrics, load_evals

from .latency import measure_all
from .onnx_export import export_student, parity
from .plot import plot_latency
from .runtime import INT8_FILE, ONNX_FILE, Encoder, ort_logits, ort_session


def onnx_metric(onnx_path: Path, texts: list[str], pairs: list[str] | None, labels: np.ndarray,
                spec, max_length: int) -> dict[str, float]:
    """The task metric of an ONNX model on the dev examples, tokenised as the service does."""
    session = ort_session(onnx_path)
    encode = Encoder(onnx_path.parent, max_length)
    logits = [ort_logits(session, encode(texts[b], pairs[b] if pairs else None))
              for b in (slice(start, start + 32) for start in range(0, len(texts), 32))]
    return compute_metrics(spec, np.concatenate(logits), labels)


def export_run(run_dir: Path, opset: int = 18, int8: bool = False, budget_ms: float | None = None,
               batches: list[int] = (1,), seq_lens: list[int] = (128,), repeats: int = 20) -> dict:
    """Export, check and time the run's student; returns what goes into report.json."""
    run = RunFolder(run_dir)
    if not (run.student / "config.json").is_file() or not run.recipe_file.is_file():
        raise UserError(f"{run_dir} is not a finished run folder (no student/ or recipe.yaml); "
                        "run `ukd-compress distill` first")
    report = run.report()
    recipe = run.recipe()
    spec, evals = load_evals(recipe)
    dev = next(iter(evals.values()))
    texts, pairs = dev["text_a"], None if dev[0]["text_b"] is None else dev["text_b"]
    labels = np.array(dev["label"])
    # one max_length from training to the parity check, the metric, io.json and the server
    max_length = recipe.task.max_length
    result = {"opset": opset, "max_length": max_length,
              "graph_optimization_level": "ORT_ENABLE_ALL"}

    def write(folder: Path) -> None:
        export_student(run.student, folder, opset, {"task": spec.name, "pairs": pairs is not None,
                                                    "max_length": max_length})
        result["parity"] = parity(run.student, folder / ONNX_FILE, texts, pairs, max_length)
        result["metric_fp32"] = onnx_metric(folder / ONNX_FILE, texts, pairs, labels, spec,
                                            max_length)
        if int8:
            quantize_dynamic(folder / ONNX_FILE, folder / INT8_FILE, weight_type=QuantType.QInt8)
            result["metric_int8"] = onnx_metric(folder / INT8_FILE, texts, pairs, labels, spec,
                                                max_length)

    final = replace_folder(run.onnx, write)
    result["onnx_bytes"] = {name: (final / file).stat().st_size
                            for name, file in (("fp32", ONNX_FILE), ("int8", INT8_FILE))
                            if (final / file).is_file()}
    teacher_weights = sum(f.stat().st_size
                          for f in Path(report["teacher"]["name"]).glob("*.safetensors"))
    if teacher_weights:  # a local teacher: how the files compare with its weights (fp32)
        result["onnx_of_teacher_weights"] = {name: round(size / teacher_weights, 3)
                                             for name, size in result["onnx_bytes"].items()}

    models = {"teacher (pytorch)": Path(report["teacher"]["name"]),
              "student (pytorch)": run.student, "student (ort fp32)": final / ONNX_FILE}
    if int8:
        models["student (ort int8)"] = final / INT8_FILE
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
    write_json(run.latency_file, latency)
    plot_latency(rows, run.latency_plot, budget_ms)
    report["export"] = {**result, "latency": latency}
    run.write_report(report)
    return report["export"]
