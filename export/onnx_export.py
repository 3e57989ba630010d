"""Export a run's stripped student to ONNX and check it against PyTorch.

Transformer students go through Optimum (``main_export``), so ``onnx/`` loads with
``ORTModelForSequenceClassification.from_pretrained``; the BiLSTM and CNN students, which Optimum
does not know, go through ``torch.onnx.export`` with dynamic batch and sequence axes. Either
folder holds model.onnx, config.json, the tokenizer and io.json (inputs, outputs, labels, max
length) for users of other stacks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

import ukd_compress  # noqa: F401  registers the BiLSTM and CNN students with the Auto classes
from ukd_compress.errors import CheckFailed, UserError
from ukd_compress.strip import stock_weights

MAX_ABS_DIFF = 1e-4
MIN_LABEL_AGREEMENT = 0.995


class _LogitsOnly(nn.Module):
    """The student as torch.onnx sees it: (input_ids, attention_mask) -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def is_transformer(config) -> bool:
    return not config.model_type.startswith("ukd_")


def _export_small(student_dir: Path, out: Path, opset: int) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(student_dir).eval()
    ids = torch.ones(2, 8, dtype=torch.long)
    out.mkdir(parents=True)
    torch.onnx.export(_LogitsOnly(model), (ids, torch.ones_like(ids)), str(out / "model.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                    "attention_mask": {0: "batch", 1: "sequence"},
                                    "logits": {0: "batch"}},
                      opset_version=opset, dynamo=False)
    model.config.save_pretrained(out)
    AutoTokenizer.from_pretrained(student_dir).save_pretrained(out)


def export_student(student_dir: Path, out: Path, opset: int = 18,
                   task: dict | None = None) -> Path:
    """Write the ONNX folder of ``student_dir`` to ``out`` (which must not exist yet); ``task``
    (e.g. {"task": "rte", "pairs": true, "max_length": 128}) goes into io.json for servers of
    the model: give the max_length the student was trained at."""
    config = AutoConfig.from_pretrained(student_dir)
    if is_transformer(config):
        from optimum.exporters.onnx import main_export

        main_export(str(student_dir), out, task="text-classification", opset=opset,
                    do_validation=False, library_name="transformers")
    else:
        _export_small(student_dir, out, opset)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(out)
    io = {"inputs": [i.name for i in session.get_inputs()],
          "outputs": [o.name for o in session.get_outputs()],
          "labels": [config.id2label[i] for i in range(config.num_labels)],
          "max_length": min(tokenizer.model_max_length, 512), "opset": opset, **(task or {})}
    (out / "io.json").write_text(json.dumps(io, indent=1))
    check_no_pseudo_classifiers(out / "model.onnx", config)
    return out


def onnx_folder(path: str | Path) -> Path:
    """The ONNX folder of a run folder (``RUN/onnx``), or ``path`` if it is one itself."""
    path = Path(path)
    for folder in (path / "onnx", path):
        if (folder / "model.onnx").is_file() and (folder / "io.json").is_file():
            return folder
    raise UserError(f"{path} holds no exported student (model.onnx + io.json); "
                    f"run `ukd-compress export {path}` first")


def check_no_pseudo_classifiers(path: Path, config) -> None:
    """The graph's only output is logits, and it holds no more weights than a stock model of
    ``config`` (names are no evidence: exporters rename initialisers). Graphs from this
    project's four student families hold at most the stock model's float elements."""
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise UserError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    outputs = [o.name for o in graph.output]
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
              onnx.TensorProto.BFLOAT16)
    in_graph = sum(int(np.prod(i.dims)) for i in graph.initializer if i.data_type in floats)
    in_stock = sum(t.numel() for t in stock_weights(config).values() if t.is_floating_point())
    if outputs != ["logits"] or in_graph > in_stock:
        raise CheckFailed(f"exported graph has outputs {outputs} and {in_graph:,} weights, "
                          f"where a stock {config.model_type} model has {in_stock:,}")


def ort_session(onnx_path: Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UserError(f"ONNX Runtime cannot load {onnx_path}: {str(exc).splitlines()[0][:200]}") from None


def ort_logits(session: ort.InferenceSession, enc: dict[str, np.ndarray]) -> np.ndarray:
    names = {i.name for i in session.get_inputs()}
    return session.run(["logits"], {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]


def parity(student_dir: Path, onnx_path: Path, texts: list[str], pairs: list[str] | None,
           max_length: int, batch_size: int = 16) -> dict[str, float]:
    """PyTorch vs ONNX Runtime logits on real examples, cut at the length the student was
    trained and is served at; raises when they disagree."""
    model = AutoModelForSequenceClassification.from_pretrained(student_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    session = ort_session(onnx_path)
    diffs, agree = [], []
    for start in range(0, len(texts), batch_size):
        b = slice(start, start + batch_size)
        enc = tokenizer(texts[b], pairs[b] if pairs else None, padding=True, truncation=True,
                        max_length=max_length, return_tensors="np")
        with torch.no_grad():
            torch_logits = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
        onnx_logits = ort_logits(session, dict(enc))
        diffs.append(np.abs(torch_logits - onnx_logits).max())
        agree.extend(torch_logits.argmax(-1) == onnx_logits.argmax(-1))
    result = {"max_abs_diff": float(max(diffs)), "label_agreement": float(np.mean(agree)),
              "examples": len(texts)}
    if result["max_abs_diff"] > MAX_ABS_DIFF or result["label_agreement"] < MIN_LABEL_AGREEMENT:
        raise CheckFailed(f"ONNX parity failed: {result}; the export was not kept")
    return result
