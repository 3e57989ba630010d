"""An exported student at run time: ONNX Runtime and the ``tokenizers`` library, no PyTorch.

The folder ``ukd-compress export`` writes holds model.onnx (and model_int8.onnx), io.json and
the student's tokenizer. The service answers with this module, and export computes the ONNX
model's dev metric with it, so the metric in report.json is the one the server gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from ukd_compress.errors import UserError

ONNX_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
IO_FILE = "io.json"
TOKENIZER_FILE = "tokenizer.json"


def onnx_folder(path: str | Path) -> Path:
    """The ONNX folder of a run folder (``RUN/onnx``), or ``path`` if it is one itself."""
    path = Path(path)
    for folder in (path / "onnx", path):
        if (folder / ONNX_FILE).is_file() and (folder / IO_FILE).is_file():
            return folder
    raise UserError(f"{path} holds no exported student ({ONNX_FILE} + {IO_FILE}); "
                    f"run `ukd-compress export {path}` first")


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


@dataclass(frozen=True)
class ModelIO:
    """io.json: what a server of the model needs beside the graph."""

    inputs: list[str]
    outputs: list[str]
    labels: list[str]
    max_length: int               # tokens per example, as the student was trained
    task: str
    pairs: bool                   # the model classifies sentence pairs (NLI, paraphrase)
    opset: int

    @classmethod
    def read(cls, folder: Path) -> "ModelIO":
        io = json.loads((Path(folder) / IO_FILE).read_text())
        if "pairs" not in io:
            raise UserError(f"{Path(folder) / IO_FILE} predates the task fields; run "
                            "`ukd-compress export` on the run again")
        return cls(io["inputs"], io["outputs"], io["labels"], int(io["max_length"]), io["task"],
                   bool(io["pairs"]), int(io["opset"]))


def _token(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken's dict."""
    return value.get("content") if isinstance(value, dict) else value


class Encoder:
    """The student's tokenizer run by the ``tokenizers`` library: the ids, attention mask and
    token types that Transformers' fast tokenizer gives for ``tokenizer(texts, pairs,
    truncation=True, max_length=N)`` and then ``tokenizer.pad``, without importing Transformers,
    which imports PyTorch (4 s and some 400 MB for a server that never runs it)."""

    def __init__(self, folder: Path, max_length: int):
        folder = Path(folder)
        if not (folder / TOKENIZER_FILE).is_file():
            raise UserError(f"{folder} has no {TOKENIZER_FILE} (a fast tokenizer); run "
                            "`ukd-compress export` on the run again")
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, strategy="longest_first",
                                         direction=config.get("truncation_side", "right"))
        pad = _token(config.get("pad_token"))
        self.pad_id = self.tokenizer.token_to_id(pad) if pad is not None else None
        if self.pad_id is None:
            raise UserError(f"the tokenizer in {folder} has no padding token")
        self.pad_type_id = int(config.get("pad_token_type_id", 0))
        self.left = config.get("padding_side", "right") == "left"

    def encode(self, first: list[str], second: list[str] | None = None) -> list[Encoding]:
        """Each text (or pair), with special tokens, cut at max_length; not padded."""
        return self.tokenizer.encode_batch(list(zip(first, second)) if second else first)

    def pad(self, encodings: list[Encoding]) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids padded to the longest of ``encodings``."""
        width = max(len(e.ids) for e in encodings)
        out = {"input_ids": np.full((len(encodings), width), self.pad_id, np.int64),
               "attention_mask": np.zeros((len(encodings), width), np.int64),
               "token_type_ids": np.full((len(encodings), width), self.pad_type_id, np.int64)}
        for row, e in enumerate(encodings):
            cols = slice(width - len(e.ids), width) if self.left else slice(0, len(e.ids))
            out["input_ids"][row, cols] = e.ids
            out["attention_mask"][row, cols] = e.attention_mask
            out["token_type_ids"][row, cols] = e.type_ids
        return out

    def __call__(self, first: list[str], second: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.pad(self.encode(first, second))
