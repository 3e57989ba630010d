"""Strip: drop what distillation added and keep a stock model folder."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (AutoModelForSequenceClassification, PreTrainedModel,
                          PreTrainedTokenizerBase)

from .errors import CheckFailed
from .files import replace_folder
from .heads import WithPseudoClassifiers


def save_model_folder(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path,
                      extra_files: dict[str, str] | None = None) -> Path:
    """A stock model folder (safetensors, config, tokenizer), written beside then renamed into place."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)

    return replace_folder(folder, write)


def strip(model: WithPseudoClassifiers, tokenizer: PreTrainedTokenizerBase, folder: Path) -> Path:
    """Save the student's backbone alone; check that the folder holds no weight that a stock
    model of its config lacks, so no pseudo classifier or projection leaves with it."""
    save_model_folder(model.backbone, tokenizer, folder)
    check_stock_weights(folder, model.backbone.config)
    return folder


def stock_weights(config) -> dict[str, torch.Tensor]:
    """The state dict of a stock sequence classifier of ``config``: names and shapes only."""
    with torch.device("meta"):  # no memory, no initialisation work
        return AutoModelForSequenceClassification.from_config(config).state_dict()


def check_stock_weights(folder: Path, config) -> None:
    """Raise unless every safetensors key in the folder is one a stock model of ``config`` has
    (the leak check). Keys a stock model has and the folder lacks are tied or ignored on save
    by Transformers, so only their absence of any weights at all is an error."""
    stock = set(stock_weights(config))
    saved = set()
    for weights in folder.glob("*.safetensors"):
        with safe_open(str(weights), "pt") as f:
            saved |= set(f.keys())
    extra = sorted(saved - stock)
    if extra or not saved:
        raise CheckFailed(f"the stripped student in {folder} is not a stock {config.model_type} "
                          f"model: {f'it holds {extra[:3]}' if extra else 'it holds no weights'}")
