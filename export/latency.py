"""Latency of the teacher and the student, in PyTorch and ONNX Runtime, on this machine.

Each measurement is warmed up, then repeated; p50/p95/p99 are per call, throughput in examples
per second. Every figure compared is measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import ukd_compress.students.small  # noqa: F401  registers the BiLSTM and CNN students

from .runtime import ort_logits, ort_session


def timed(call: Callable[[], object], warmup: int, repeats: int, batch: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "examples_per_s": float(batch * 1000 / ms.mean())}


def fixed_inputs(tokenizer, texts: list[str], batch: int, seq_len: int) -> dict[str, np.ndarray]:
    """``batch`` real texts, padded or cut to exactly ``seq_len`` tokens."""
    chosen = (texts * (batch // max(len(texts), 1) + 1))[:batch]
    return dict(tokenizer(chosen, padding="max_length", truncation=True, max_length=seq_len,
                          return_tensors="np"))


def measure_all(models: dict[str, Path], texts: list[str], batches: list[int], seq_lens: list[int],
                warmup: int = 3, repeats: int = 20) -> list[dict]:
    """Rows of (model, runtime, batch, seq_len, figures) for every model, batch and length.

    ``models`` maps a name to a model folder (PyTorch) or a .onnx file (ONNX Runtime).
    """
    threads = torch.get_num_threads()
    rows = []
    for name, path in models.items():
        if path.suffix == ".onnx":
            session = ort_session(path, threads)
            tokenizer = AutoTokenizer.from_pretrained(path.parent)
            run = lambda enc, s=session: ort_logits(s, enc)  # noqa: E731
            runtime = "onnxruntime"
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path).eval()
            tokenizer = AutoTokenizer.from_pretrained(path)

            def run(enc, m=model):
                with torch.inference_mode():
                    return m(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits
            runtime = "pytorch"
        for batch in batches:
            for seq_len in seq_lens:
                enc = fixed_inputs(tokenizer, texts, batch, seq_len)
                figures = timed(lambda: run(enc), warmup, repeats, batch)
                rows.append({"model": name, "runtime": runtime, "batch": batch,
                             "seq_len": seq_len, "threads": threads, **figures})
    return rows
