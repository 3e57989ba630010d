"""Export a run's stripped student to ONNX and check it against PyTorch.

Transformer students go through Optimum (``main_export``), so ``onnx/`` loads with
``ORTModelForSequenceClassification.from_pretrained``; the BiLSTM and CNN students, which Optimum
does not know, go through ``torch.onnx.export`` with dynamic batch and sequence axes. Either
folder holds model.onnx, config.json, the tokenizer and io.json (inputs, outputs, labels, max
length) for users of other stacks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

import ukd_compress.students.small  # noqa: F401  registers the BiLSTM and CNN students with the Auto classes
from ukd_compress.errors import CheckFailed, UserError
from ukd_compress.files import write_json
from ukd_compress.strip import stock_weights

from .runtime import IO_FILE, ONNX_FILE, ort_logits, ort_session

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
    torch.onnx.export(_LogitsOnly(model), (ids, torch.ones_like(ids)), str(out / ONNX_FILE),
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
    session = ort_session(out / ONNX_FILE)
    tokenizer = AutoTokenizer.from_pretrained(out)
    io = {"inputs": [i.name for i in session.get_inputs()],
          "outputs": [o.name for o in session.get_outputs()],
          "labels": [config.id2label[i] for i in range(config.num_labels)],
          "max_length": min(tokenizer.model_max_length, 512), "opset": opset, **(task or {})}
    write_json(out / IO_FILE, io)
    check_no_pseudo_classifiers(out / ONNX_FILE, config)
    return out


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
