"""An exported student as the service sees it: texts in, probabilities per label out.

Reads the folder ``ukd-compress export`` writes with ONNX Runtime and the ``tokenizers``
library alone (export/runtime.py): the server process never imports PyTorch or Transformers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ukd_compress.errors import UserError
from ukd_compress.export.runtime import (INT8_FILE, ONNX_FILE, Encoder, ModelIO, onnx_folder,
                                         ort_logits, ort_session)
from ukd_compress.files import sha256


@dataclass(frozen=True)
class ModelInfo:
    """The ONNX file served, its id, and its io.json (labels, pairs, task, max_length)."""

    folder: Path
    onnx_file: str
    model_id: str                 # "sha256:<hex>" of the ONNX file served
    io: ModelIO

    @classmethod
    def load(cls, path: str | Path, onnx_file: str = ONNX_FILE) -> "ModelInfo":
        folder = onnx_folder(path)
        if not (folder / onnx_file).is_file():
            raise UserError(f"{folder / onnx_file} does not exist (`ukd-compress export --int8` "
                            f"writes {INT8_FILE})")
        return cls(folder, onnx_file, "sha256:" + sha256(folder / onnx_file), ModelIO.read(folder))


CHUNK = 16  # items per ONNX Runtime call within a batch


class OnnxStudent:
    """ONNX Runtime session + tokenizer of an exported student."""

    def __init__(self, info: ModelInfo, threads: int | None = None):
        self.info = info
        self.session = ort_session(info.folder / info.onnx_file, threads or os.cpu_count())
        self.encoder = Encoder(info.folder, info.io.max_length)

    def probabilities(self, items: list[list[str]]) -> np.ndarray:
        """(items, labels) softmax probabilities; an item is [text] or [text_a, text_b].

        Items run in chunks of similar length, so a batch pads short texts to their neighbours'
        length rather than to the longest text of the batch.
        """
        first = [item[0] for item in items]
        second = [item[1] for item in items] if self.info.io.pairs else None
        encodings = self.encoder.encode(first, second)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        logits = np.empty((len(items), len(self.info.io.labels)))
        for chunk in np.array_split(order, -(-len(order) // CHUNK)):
            logits[chunk] = ort_logits(self.session,
                                       self.encoder.pad([encodings[i] for i in chunk]))
        if logits.shape[1] == 1:  # regression (stsb): the score itself
            return logits
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)
