"""An exported student as the service sees it: texts in, probabilities per label out.

Reads the folder ``ukd-compress export`` writes (model.onnx, the tokenizer, io.json) with ONNX
Runtime and the tokenizer alone: no PyTorch in the request path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from export.onnx_export import onnx_folder, ort_logits, ort_session
from ukd_compress.errors import UserError
from ukd_compress.strip import sha256


@dataclass(frozen=True)
class ModelInfo:
    """What a client of the model needs to know, read from io.json."""

    folder: Path
    onnx_file: str
    model_id: str                 # "sha256:<hex>" of the ONNX file served
    labels: list[str]
    pairs: bool                   # the model classifies sentence pairs (NLI, paraphrase)
    task: str
    max_length: int

    @classmethod
    def load(cls, path: str | Path, onnx_file: str = "model.onnx") -> "ModelInfo":
        folder = onnx_folder(path)
        if not (folder / onnx_file).is_file():
            raise UserError(f"{folder / onnx_file} does not exist (`ukd-compress export --int8` "
                            "writes model_int8.onnx)")
        io = json.loads((folder / "io.json").read_text())
        if "pairs" not in io:
            raise UserError(f"{folder / 'io.json'} predates the task fields; run "
                            "`ukd-compress export` on the run again")
        return cls(folder, onnx_file, "sha256:" + sha256(folder / onnx_file), io["labels"],
                   io["pairs"], io["task"], int(io["max_length"]))


CHUNK = 16  # items per ONNX Runtime call within a batch


class OnnxStudent:
    """ONNX Runtime session + tokenizer of an exported student."""

    def __init__(self, info: ModelInfo, threads: int | None = None):
        self.info = info
        self.session = ort_session(info.folder / info.onnx_file, threads or os.cpu_count())
        self.tokenizer = AutoTokenizer.from_pretrained(info.folder)
        # we tokenise once and pad per chunk, on purpose: silence the advice to do both at once
        self.tokenizer.deprecation_warnings["Asking-to-pad-a-fast-tokenizer"] = True

    def probabilities(self, items: list[list[str]]) -> np.ndarray:
        """(items, labels) softmax probabilities; an item is [text] or [text_a, text_b].

        Items run in chunks of similar length, so a batch pads short texts to their neighbours'
        length rather than to the longest text of the batch.
        """
        first = [item[0] for item in items]
        second = [item[1] for item in items] if self.info.pairs else None
        enc = self.tokenizer(first, second, truncation=True, max_length=self.info.max_length)
        order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
        logits = np.empty((len(items), len(self.info.labels)))
        for chunk in np.array_split(order, -(-len(order) // CHUNK)):
            rows = {k: [v[i] for i in chunk] for k, v in enc.items()}
            logits[chunk] = ort_logits(self.session,
                                       dict(self.tokenizer.pad(rows, return_tensors="np")))
        if logits.shape[1] == 1:  # regression (stsb): the score itself
            return logits
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)
