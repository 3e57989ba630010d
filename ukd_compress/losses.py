"""Distillation losses as pure functions of tensors (shapes in each docstring).

Names follow the papers: ``kd`` (Hinton et al., 2015), ``pkd`` (Sun et al., EMNLP 2019),
``alp`` (Passban et al., AAAI 2021), ``ukd`` (Wu et al., EMNLP 2021). A one-label task
(regression, e.g. STS-B) uses mean squared error where classes would use KL divergence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on labels; logits (batch, labels), labels (batch,). MSE for one label."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


def soft_target_loss(student: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 KL(softmax(target/T) || softmax(student/T)), summed over labels, mean over the rest.

    student, target: (..., labels). The target carries no gradient.
    """
    target = target.detach()
    if student.shape[-1] == 1:
        return F.mse_loss(student, target)
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_target = F.log_softmax(target / temperature, dim=-1)
    kl = (log_p_target.exp() * (log_p_target - log_p_student)).sum(-1)
    return temperature ** 2 * kl.mean()


def kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton KD on final logits, (batch, labels) each."""
    return soft_target_loss(student_logits, teacher_logits, temperature)


def layer_attention(student_pseudo: torch.Tensor, teacher_pseudo: torch.Tensor,
                    space: str = "logits", scale: bool = False, temperature: float = 1.0,
                    allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of each student layer over all teacher layers, in the output space.

    student_pseudo (batch, M, labels), teacher_pseudo (batch, L, labels) -> (batch, M, L),
    rows summing to 1. ``space``: dot products of raw logits or of log-probabilities (one
    label, as in regression: minus the squared distance);
    ``scale`` divides them by sqrt(labels), ``temperature`` by itself (higher: flatter);
    ``allowed`` (M, L) or (batch, M, L) bool, if given, limits each student layer to some
    teacher layers.
    """
    if student_pseudo.shape[-1] == 1:
        # One output (regression): a dot product of two scalars only says which teacher layer
        # predicts the largest value; closeness is what matters, so score by -squared distance.
        scores = -(student_pseudo - teacher_pseudo.transpose(1, 2)).pow(2)
    elif space == "logprobs":
        scores = F.log_softmax(student_pseudo, -1) @ F.log_softmax(teacher_pseudo, -1).transpose(1, 2)
    elif space == "logits":
        scores = student_pseudo @ teacher_pseudo.transpose(1, 2)
    else:
        raise ValueError("attention space must be 'logits' or 'logprobs'")
    if scale:
        scores = scores / student_pseudo.shape[-1] ** 0.5
    scores = scores / temperature
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=-1)


def ukd(student_pseudo: torch.Tensor, teacher_pseudo: torch.Tensor, temperature: float,
        space: str = "logits", scale: bool = False, attention_temperature: float = 1.0,
        allowed: torch.Tensor | None = None, reduce: str = "mean") -> torch.Tensor:
    """Universal-KD: each student layer matches its attention-weighted mix of teacher layers.

    student_pseudo (batch, M, labels), teacher_pseudo (batch, L, labels). The projected target
    c_i = sum_j a_ij z_T^j is detached; the loss is averaged (``reduce="mean"``) or summed
    (``"sum"``) over the M student layers. ``allowed``: see :func:`layer_attention`.
    """
    weights = layer_attention(student_pseudo.detach(), teacher_pseudo, space, scale,
                              attention_temperature, allowed)
    projected = weights @ teacher_pseudo
    per_layer = soft_target_loss(student_pseudo, projected, temperature)
    return per_layer * student_pseudo.shape[1] if reduce == "sum" else per_layer


def correct_layers(teacher_pseudo: torch.Tensor, labels: torch.Tensor,
                   allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, M or 1, L) bool: per example, the teacher layers whose pseudo classifier predicts
    its label, within ``allowed`` (M, L) if given. Where no allowed layer is right, all allowed
    layers stay: the gate never empties a row.

    With attention on logits, a student layer that is wrong on an example attends most to the
    teacher layers that are wrong with it; gated, it only learns from layers that are right.
    """
    right = (teacher_pseudo.argmax(-1) == labels.unsqueeze(-1)).unsqueeze(1)  # (batch, 1, L)
    if allowed is None:
        allowed = torch.ones_like(right)
    gated = right & allowed
    return torch.where(gated.any(-1, keepdim=True), gated, allowed.expand_as(gated))


def teacher_window(student_layers: int, teacher_layers: int) -> torch.Tensor:
    """(M, L) bool: student layer i may attend to teacher layers at or above its relative depth.

    With 2 student and 6 teacher layers: layer 1 attends to teacher layers 3-6, layer 2 to 6.
    The lower teacher layers, weaker classifiers, then teach the lower student layers only.
    """
    student_depth = torch.arange(1, student_layers + 1) / student_layers
    teacher_depth = torch.arange(1, teacher_layers + 1) / teacher_layers
    return teacher_depth.unsqueeze(0) >= student_depth.unsqueeze(1) - 1e-6


def pkd(student_states: torch.Tensor, teacher_states: torch.Tensor) -> torch.Tensor:
    """Patient KD: squared distance of L2-normalised [CLS] states under a fixed layer map.

    student_states, teacher_states: (batch, M, width), already paired layer by layer and of one
    width (project the student first). Summed over width and layers, mean over the batch.
    """
    diff = F.normalize(student_states, dim=-1) - F.normalize(teacher_states.detach(), dim=-1)
    return diff.pow(2).sum(dim=(-1, -2)).mean()


def alp(student_states: torch.Tensor, teacher_states: torch.Tensor) -> torch.Tensor:
    """ALP-KD: each student state matches its attention-fused teacher states (hidden space).

    student_states (batch, M, width), teacher_states (batch, L, width), one width. Mean squared
    error over width, mean over student layers.
    """
    teacher_states = teacher_states.detach()
    scores = student_states @ teacher_states.transpose(1, 2) / student_states.shape[-1] ** 0.5
    fused = scores.softmax(dim=-1) @ teacher_states
    return F.mse_loss(student_states, fused)
