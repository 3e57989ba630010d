"""Put a run's ONNX folder into BentoML's model store, so `bentoml build` packs it in a Bento."""

from __future__ import annotations

import shutil
from pathlib import Path

import bentoml

from ukd_compress.run_folder import RunFolder

from .runtime import ModelIO, onnx_folder


def save_bento_model(run_dir: Path, name: str = "ukd-student") -> str:
    """Copy ``run_dir``'s onnx/ into the model store as ``name:<version>``; returns the tag."""
    folder = onnx_folder(run_dir)
    run = RunFolder(folder.parent)
    student = run.report().get("student", {}) if run.report_file.is_file() else {}
    with bentoml.models.create(name, labels={"task": ModelIO.read(folder).task, "source": "ukd-compress"},
                               metadata={"run_dir": str(folder.parent.resolve()),
                                         "metrics": student.get("metrics", {})}) as model:
        shutil.copytree(folder, model.path, dirs_exist_ok=True)
    return str(model.tag)
