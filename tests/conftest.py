"""Shared fixtures: offline hub, the shipped GLUE folder, tiny models built from configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("UKD_DATA_DIR", str((ROOT / "../shared/data/glue_data").resolve()))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import (BertConfig, BertForSequenceClassification, RobertaConfig,  # noqa: E402
                          RobertaForSequenceClassification)

from ukd_compress.heads import PseudoClassifiers, WithPseudoClassifiers, backbone_widths  # noqa: E402
from ukd_compress.models import load_tokenizer  # noqa: E402
from ukd_compress.recipe import Recipe  # noqa: E402
from ukd_compress.strip import save_model_folder, strip  # noqa: E402
from ukd_compress.students.small import (BiLSTMConfig, BiLSTMForSequenceClassification,  # noqa: E402
                                         CNNConfig, CNNForSequenceClassification)

DATA_DIR = Path(os.environ["UKD_DATA_DIR"])


@pytest.fixture(scope="session", autouse=True)
def ukd_home(tmp_path_factory) -> Path:
    """One cache per test session: the offline teacher is fine-tuned at most once."""
    home = tmp_path_factory.mktemp("ukd_home")
    os.environ["UKD_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The real WordPiece tokenizer shipped with MiniLM-L6."""
    return load_tokenizer("minilm-l6")


def tiny(family: str, num_labels: int = 2, vocab: int = 30522):
    """A small randomly initialised classifier of one family, in eval mode (no dropout)."""
    torch.manual_seed(0)
    common = dict(vocab_size=vocab, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                  num_labels=num_labels)
    if family == "bert":
        model = BertForSequenceClassification(BertConfig(num_hidden_layers=4, **common))
    elif family == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=4, **common))
    elif family == "distilroberta":  # DistilRoBERTa is a 6-layer RoBERTa
        model = RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=6, **common))
    elif family == "bilstm":
        model = BiLSTMForSequenceClassification(BiLSTMConfig(
            vocab_size=vocab, embedding_dim=24, hidden_size=16, num_hidden_layers=2,
            num_labels=num_labels, pad_token_id=0))
    elif family == "cnn":
        model = CNNForSequenceClassification(CNNConfig(
            vocab_size=vocab, embedding_dim=24, hidden_size=16, num_hidden_layers=3,
            num_labels=num_labels, pad_token_id=0))
    else:
        raise ValueError(family)
    model.config.architectures = [type(model).__name__]
    return model.eval()


FAMILIES = ("bert", "roberta", "distilroberta", "bilstm", "cnn")


LABELS = {"sst2": ["negative", "positive"], "rte": ["entailment", "not_entailment"]}


def make_run(tmp_path: Path, family: str, tokenizer, task: str = "sst2") -> Path:
    """A finished run folder with a tiny stripped student and a tiny teacher on real GLUE data."""
    run = tmp_path / f"run-{family}-{task}"
    model = tiny(family, vocab=len(tokenizer))
    model.config.id2label = dict(enumerate(LABELS[task]))
    model.config.label2id = {name: i for i, name in enumerate(LABELS[task])}
    strip(WithPseudoClassifiers(model, PseudoClassifiers(backbone_widths(model), 2)), tokenizer,
          run / "student")
    teacher = save_model_folder(tiny("bert"), tokenizer, tmp_path / "teacher")
    recipe = Recipe().replace("task", name=task, max_eval_samples=48)
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    (run / "report.json").write_text(json.dumps({"teacher": {"name": str(teacher)}}))
    return run
