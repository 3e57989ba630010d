"""Which student layers carry the Universal-KD term, and which teacher layers each may attend to."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .losses import teacher_window
from .recipe import MethodConfig


@dataclass
class LayerPlan:
    """Student layers with a UKD term, and (those layers, teacher layers) bool: who attends to whom."""

    student: list[int]
    allowed: torch.Tensor

    def describe(self) -> list[list[int]]:
        """Per UKD student layer, the teacher layers it may attend to (0-based)."""
        return [row.nonzero().flatten().tolist() for row in self.allowed]


def layer_plan(method: MethodConfig, student_layers: int, teacher_layers: int,
               teacher_scores: list[float] | None = None) -> LayerPlan:
    """The plan a recipe's method asks for; ``teacher_scores`` are the teacher's pseudo
    classifiers' dev metrics, needed to drop weak teacher layers."""
    student = list(range(student_layers - 1 if method.ukd_layers == "all_but_last" else student_layers))
    allowed = torch.ones(student_layers, teacher_layers, dtype=torch.bool)
    if method.teacher_layers == "window":
        allowed = teacher_window(student_layers, teacher_layers)
    elif method.teacher_layers == "top_for_last":  # the low layers teach the low layers only
        allowed[-1, :-1] = False
    if method.drop_weak_layers is not None and teacher_scores:
        scores = torch.tensor(teacher_scores)
        strong = scores >= scores.max() - method.drop_weak_layers
        allowed = allowed & strong
        allowed[~allowed.any(-1), int(scores.argmax())] = True  # never an empty row
    return LayerPlan(student, allowed[student])
