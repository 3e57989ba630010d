"""The distillation methods, each one row of data: its loss weights and its hidden-space term.

The CLI's choices, the job API's validation, the recipe and the benchmarks all read this table;
adding a method is one row here (and its loss in losses.py if it brings a new term).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """Loss = alpha * CE + beta * KD + gamma * UKD + delta * the hidden-space term."""

    name: str
    summary: str
    alpha: float
    beta: float
    gamma: float = 0.0
    delta: float = 0.0
    hidden: str | None = None     # the hidden-space term delta weighs: "pkd" | "alp" | None

    def weights(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "delta": self.delta}


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ce", "labels only", 1.0, 0.0),
    Method("kd", "Hinton KD on the final logits", 0.5, 0.5),
    Method("pkd", "Patient KD: hidden states of matched layers", 0.5, 0.5, delta=10.0,
           hidden="pkd"),
    Method("alp", "ALP-KD: attention over the teacher's hidden states", 0.8, 0.2, delta=100.0,
           hidden="alp"),
    Method("ukd", "Universal-KD: pseudo classifiers, attention over teacher layers", 0.5, 0.5,
           gamma=0.5),
    Method("ukd+pkd", "Universal-KD and Patient KD", 0.5, 0.5, gamma=0.5, delta=10.0,
           hidden="pkd"),
    Method("ukd+alp", "Universal-KD and ALP-KD", 0.5, 0.5, gamma=0.5, delta=100.0, hidden="alp"),
)}

HIDDEN_TERMS = ("pkd", "alp")
