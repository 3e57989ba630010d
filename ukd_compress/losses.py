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
                    space: str = "logits", scale: bool = False) -> torch.Tensor:
    """Attention of each student layer over all teacher layers, in the output space.

    student_pseudo (batch, M, labels), teacher_pseudo (batch, L, labels) -> (batch, M, L),
    rows summing to 1. ``space``: dot products of raw logits or of log-probabilities;
    ``scale`` divides them by sqrt(labels).
    """
    if space == "logprobs":
        student_pseudo = F.log_softmax(student_pseudo, dim=-1)
        teacher_pseudo = F.log_softmax(teacher_pseudo, dim=-1)
    elif space != "logits":
        raise ValueError("attention space must be 'logits' or 'logprobs'")
    scores = student_pseudo @ teacher_pseudo.transpose(1, 2)
    if scale:
        scores = scores / student_pseudo.shape[-1] ** 0.5
    return scores.softmax(dim=-1)


def ukd(student_pseudo: torch.Tensor, teacher_pseudo: torch.Tensor, temperature: float,
        space: str = "logits", scale: bool = False) -> torch.Tensor:
    """Universal-KD: each student layer matches its attention-weighted mix of teacher layers.

    student_pseudo (batch, M, labels), teacher_pseudo (batch, L, labels). The projected target
    c_i = sum_j a_ij z_T^j is detached; the loss is summed over the M student layers.
    """
    weights = layer_attention(student_pseudo.detach(), teacher_pseudo, space, scale)
    projected = weights @ teacher_pseudo
    return student_pseudo.shape[1] * soft_target_loss(student_pseudo, projected, temperature)


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
