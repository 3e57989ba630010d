"""A run folder: the one place that knows its names, and how each file in it is written.

    runs/sst2-teacher2-ukd-20261127-101500/      (runs/...-101500.partial while it trains)
      recipe.yaml   status.json   report.json   report.png   checkpoints/
      teacher_pseudo_classifiers/   student_tokenizer/ (a vocabulary of its own)
      student/      (the stripped, stock model folder)
      onnx/         (ukd-compress export: model.onnx, model_int8.onnx, io.json, the tokenizer)
      latency.json  latency.png

Standard library and the recipe only, so the server's job API reads runs without the training
stack.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError
from .files import write_json, write_text

PARTIAL = ".partial"


class RunFolder:
    """The folder of one run, finished or (named ``*.partial``) still training."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # --- its names ---------------------------------------------------------------------
    @property
    def recipe_file(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def report_file(self) -> Path:
        return self.path / "report.json"

    @property
    def report_plot(self) -> Path:
        return self.path / "report.png"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def teacher_heads(self) -> Path:
        return self.path / "teacher_pseudo_classifiers"

    @property
    def student_tokenizer(self) -> Path:
        """A student vocabulary of its own, kept for --resume."""
        return self.path / "student_tokenizer"

    @property
    def student(self) -> Path:
        return self.path / "student"

    @property
    def onnx(self) -> Path:
        return self.path / "onnx"

    @property
    def latency_file(self) -> Path:
        return self.path / "latency.json"

    @property
    def latency_plot(self) -> Path:
        return self.path / "latency.png"

    # --- finished or not ---------------------------------------------------------------
    @property
    def is_partial(self) -> bool:
        return self.path.name.endswith(PARTIAL)

    def partial(self) -> "RunFolder":
        """The folder this run trains in before it is finished."""
        return self if self.is_partial else RunFolder(self.path.with_name(self.path.name + PARTIAL))

    def final(self) -> "RunFolder":
        """The folder this run has once finished."""
        return RunFolder(self.path.with_name(self.path.name[: -len(PARTIAL)])) if self.is_partial else self

    def finish(self) -> "RunFolder":
        """Rename the ``.partial`` folder to its final name."""
        final = self.final()
        self.path.rename(final.path)
        return final

    @property
    def is_resumable(self) -> bool:
        return self.is_partial and self.recipe_file.is_file()

    # --- its files ---------------------------------------------------------------------
    def recipe(self):
        from .recipe import Recipe

        return Recipe.from_yaml(self.recipe_file)

    def write_recipe(self, text: str) -> None:
        write_text(self.recipe_file, text)

    def report(self) -> dict:
        if not self.report_file.is_file():
            raise UserError(f"{self.path} is not a finished run folder (no report.json); "
                            "run `ukd-compress distill` first")
        return json.loads(self.report_file.read_text())

    def write_report(self, report: dict) -> None:
        write_json(self.report_file, report)

    def status(self) -> dict | None:
        return json.loads(self.status_file.read_text()) if self.status_file.is_file() else None

    def write_status(self, status: dict) -> None:
        write_json(self.status_file, status, indent=None)
