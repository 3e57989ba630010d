"""The service's configuration, from the environment (`ukd-compress serve` sets it from options)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ukd_compress.export.runtime import ONNX_FILE


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    model: str | None        # UKD_MODEL: a run folder or its onnx/ folder; unset: jobs only
    onnx_file: str           # UKD_ONNX_FILE: model.onnx, or model_int8.onnx
    batching: bool           # UKD_BATCHING=0: every request runs alone
    max_batch_size: int      # UKD_MAX_BATCH_SIZE: texts per adaptive batch
    max_latency_ms: int      # UKD_MAX_LATENCY_MS: BentoML sheds load it expects to exceed this
    max_items: int           # UKD_MAX_ITEMS: texts or pairs per request
    max_chars: int           # UKD_MAX_CHARS: characters per text
    models_root: Path        # UKD_MODELS_ROOT: job paths and run folders live under it
    job_token: str | None    # UKD_JOB_TOKEN: bearer token of the job API; unset: jobs off
    data_dir: str | None     # UKD_DATA_DIR: GLUE folder for jobs
    threads: int | None      # UKD_THREADS: ONNX Runtime intra-op threads (default: all cores)
    drain_file: str | None   # UKD_DRAIN_FILE: while it exists, /readyz is 503 (see supervise.py)

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ.get
        return cls(model=env("UKD_MODEL") or None,
                   onnx_file=env("UKD_ONNX_FILE", ONNX_FILE),
                   batching=_flag("UKD_BATCHING", True),
                   max_batch_size=int(env("UKD_MAX_BATCH_SIZE", "64")),
                   max_latency_ms=int(env("UKD_MAX_LATENCY_MS", "10000")),
                   max_items=int(env("UKD_MAX_ITEMS", "64")),
                   max_chars=int(env("UKD_MAX_CHARS", "4000")),
                   models_root=Path(env("UKD_MODELS_ROOT", "models")),
                   job_token=env("UKD_JOB_TOKEN") or None,
                   data_dir=env("UKD_DATA_DIR") or None,
                   threads=int(env("UKD_THREADS")) if env("UKD_THREADS") else None,
                   drain_file=env("UKD_DRAIN_FILE") or None)
