"""Strip: drop what distillation added and keep a stock model folder, plus artifact hashes."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (AutoModelForSequenceClassification, PreTrainedModel,
                          PreTrainedTokenizerBase)

from .errors import CheckFailed
from .heads import WithPseudoClassifiers


def save_folder(folder: Path, write: Callable[[Path], object]) -> Path:
    """``write(path)`` fills a folder beside ``folder``, which then replaces ``folder``."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def save_model_folder(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path,
                      extra_files: dict[str, str] | None = None) -> Path:
    """A stock model folder (safetensors, config, tokenizer), written beside then renamed into place."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)

    return save_folder(folder, write)


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


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_hashes(root: Path, folders: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file under the named folders of ``root``, keyed by relative path."""
    return {str(p.relative_to(root)): sha256(p)
            for name in folders for p in sorted((root / name).rglob("*")) if p.is_file()}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
