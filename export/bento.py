"""Put a run's ONNX folder into BentoML's model store, so `bentoml build` packs it in a Bento."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bentoml

from .onnx_export import onnx_folder


def save_bento_model(run_dir: Path, name: str = "ukd-student") -> str:
    """Copy ``run_dir``'s onnx/ into the model store as ``name:<version>``; returns the tag."""
    folder = onnx_folder(run_dir)
    io = json.loads((folder / "io.json").read_text())
    report = folder.parent / "report.json"
    student = json.loads(report.read_text()).get("student", {}) if report.is_file() else {}
    with bentoml.models.create(name, labels={"task": str(io.get("task")), "source": "ukd-compress"},
                               metadata={"run_dir": str(folder.parent.resolve()),
                                         "metrics": student.get("metrics", {})}) as model:
        shutil.copytree(folder, model.path, dirs_exist_ok=True)
    return str(model.tag)
