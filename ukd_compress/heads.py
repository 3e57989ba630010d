"""Pseudo classifiers and the per-layer view of any backbone.

Every model family enters through :func:`layer_states`: transformers give one vector per layer
(the mean over valid tokens, or the first-token [CLS]/<s> vector), our BiLSTM and CNN students
give already pooled vectors. The losses therefore never know which architecture they face.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .recipe import PSEUDO_HEAD_KINDS


def layer_states(hidden_states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor | None = None,
                 pooling: str = "mean") -> list[torch.Tensor]:
    """One (batch, width) vector per layer, embeddings excluded.

    ``hidden_states`` is a model's ``output_hidden_states`` tuple: (embeddings, layer 1, ...).
    Sequences (batch, tokens, width) give the mean over valid tokens (``mean``) or their first
    token (``cls``); pooled (batch, width) vectors pass as they are. Mean is the default because
    on the shipped MiniLM teacher the [CLS] vectors of layers 1-3 carry nothing a classifier can
    use (their pseudo classifiers stayed at the majority class, 50.9% on SST-2 dev; mean-pooled
    ones reached 77-84%).
    """
    states = []
    for h in hidden_states[1:]:
        if h.dim() == 2:
            states.append(h)
        elif pooling == "cls":
            states.append(h[:, 0])
        else:
            mask = (torch.ones(h.shape[:2], device=h.device) if attention_mask is None
                    else attention_mask).unsqueeze(-1).to(h.dtype)
            states.append((h * mask).sum(1) / mask.sum(1).clamp(min=1))
    return states


def backbone_widths(model: nn.Module) -> list[int]:
    """The width of each layer's representation, read off the model's config."""
    config = model.config
    if hasattr(config, "layer_widths"):
        return list(config.layer_widths)
    return [config.hidden_size] * config.num_hidden_layers


class PseudoClassifier(nn.Module):
    """Maps one layer's representation to class logits: Linear, or dense+tanh+Linear like BERT's head."""

    def __init__(self, width: int, num_labels: int, kind: str = "mlp", dropout: float = 0.1):
        super().__init__()
        if kind == "linear":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_labels))
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, width), nn.Tanh(),
                                     nn.Dropout(dropout), nn.Linear(width, num_labels))
        else:
            raise ValueError(f"pseudo classifier kind must be one of {PSEUDO_HEAD_KINDS}")

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


class PseudoClassifiers(nn.Module):
    """One pseudo classifier per layer; ``forward`` stacks their logits to (batch, layers, labels)."""

    def __init__(self, widths: list[int], num_labels: int, kind: str = "mlp"):
        super().__init__()
        self.widths, self.num_labels, self.kind = list(widths), num_labels, kind
        self.heads = nn.ModuleList(PseudoClassifier(w, num_labels, kind) for w in widths)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([head(s) for head, s in zip(self.heads, states)], dim=1)

    def save(self, folder: Path, extra: dict | None = None) -> None:
        """Write ``pseudo_classifiers.safetensors`` and ``pseudo_classifiers.json`` into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()},
                  str(folder / "pseudo_classifiers.safetensors"))
        meta = {"widths": self.widths, "num_labels": self.num_labels, "kind": self.kind, **(extra or {})}
        (folder / "pseudo_classifiers.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "PseudoClassifiers":
        meta = json.loads((folder / "pseudo_classifiers.json").read_text())
        heads = cls(meta["widths"], meta["num_labels"], meta["kind"])
        heads.load_state_dict(load_file(str(folder / "pseudo_classifiers.safetensors")))
        return heads


@dataclass
class LayerOutputs:
    """What distillation sees of a model: final logits, per-layer states and pseudo logits."""

    logits: torch.Tensor                      # (batch, labels)
    states: torch.Tensor | None = None        # (batch, layers, width): projected if widths differ
    pseudo_logits: torch.Tensor | None = None  # (batch, layers, labels)


class WithPseudoClassifiers(nn.Module):
    """A stock backbone plus what distillation adds to it: pseudo classifiers and, for the
    hidden-space losses (PKD, ALP-KD), projections to the teacher's width. Stripping keeps
    ``backbone`` alone."""

    def __init__(self, backbone: nn.Module, pseudo: PseudoClassifiers | None = None,
                 projection: nn.ModuleList | None = None, pooling: str = "mean"):
        super().__init__()
        self.backbone, self.pseudo, self.projection = backbone, pseudo, projection
        self.pooling = pooling

    def forward(self, with_states: bool = False, **inputs: torch.Tensor) -> LayerOutputs:
        if self.pseudo is None and not with_states:
            return LayerOutputs(self.backbone(**inputs).logits)
        out = self.backbone(**inputs, output_hidden_states=True)
        states = layer_states(out.hidden_states, inputs.get("attention_mask"), self.pooling)
        pseudo = None if self.pseudo is None else self.pseudo(states)
        if not with_states:
            return LayerOutputs(out.logits, None, pseudo)
        if self.projection is not None:
            states = [proj(s) for proj, s in zip(self.projection, states)]
        return LayerOutputs(out.logits, torch.stack(states, dim=1), pseudo)
