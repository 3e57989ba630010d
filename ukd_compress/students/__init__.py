"""Student factory: ``teacher:K``, a hub name or folder, ``bilstm`` or ``cnn``."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UserError
from ..models import load_base_classifier, load_config, load_tokenizer
from ..vocab import Transfer, use_vocabulary
from .small import SMALL_STUDENTS


@dataclass
class Student:
    """A student model and the tokenizer it reads raw text with."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    kept_layers: list[int] | None = None  # teacher layers a ``teacher:...`` student was built from
    transfer: Transfer | None = None      # how a vocabulary of its own was initialised


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The transformer's stack of layers: the ModuleList as long as ``config.num_hidden_layers``."""
    depth = model.config.num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise UserError(f"cannot find the layer stack of a {type(model).__name__} to truncate")


def evenly_spaced(depth: int, k: int) -> list[int]:
    """k of ``depth`` layer indices, the top of each of k equal segments (6, 2 -> [2, 5])."""
    return [round((i + 1) * depth / k) - 1 for i in range(k)]


def check_fits(spec: str, teacher_depth: int) -> None:
    """Fail early (before any teacher is fine-tuned) when ``teacher:...`` cannot be built."""
    kind, k = parse_spec(spec)
    if kind == "teacher":
        layers_to_keep(k, teacher_depth)


def layers_to_keep(k: int | list[int], teacher_depth: int) -> list[int]:
    """The teacher layers (0-based) a student keeps: K evenly spaced ones for ``teacher:K``,
    those named for ``teacher:0,5``."""
    if isinstance(k, int):
        if not 1 <= k <= teacher_depth:
            raise UserError(f"student teacher:{k} needs 1 to {teacher_depth} layers: "
                            f"the teacher has {teacher_depth}")
        return evenly_spaced(teacher_depth, k)
    if k != sorted(set(k)) or not 0 <= k[0] <= k[-1] < teacher_depth:
        raise UserError(f"student teacher:{','.join(map(str, k))}: name distinct teacher layers "
                        f"in order, each 0 to {teacher_depth - 1}")
    return k


def truncated_teacher(teacher: PreTrainedModel, k: int | list[int]
                      ) -> tuple[PreTrainedModel, list[int]]:
    """A copy of the teacher with its embeddings, the layers :func:`layers_to_keep` names and
    its head (PKD's initialisation)."""
    keep = layers_to_keep(k, teacher.config.num_hidden_layers)
    student = copy.deepcopy(teacher)
    layers = layer_list(student)
    kept = nn.ModuleList(layers[i] for i in keep)
    for i in range(len(layers) - 1, -1, -1):
        del layers[i]
    layers.extend(kept)
    student.config.num_hidden_layers = len(keep)
    return student, keep


def parse_spec(spec: str) -> tuple[str, int | list[int] | None]:
    """``teacher:4`` -> ("teacher", 4); ``teacher:0,5`` -> ("teacher", [0, 5]); anything else
    -> (spec, None)."""
    if spec.startswith("teacher:"):
        value = spec.split(":", 1)[1]
        try:
            return "teacher", ([int(i) for i in value.split(",")] if "," in value else int(value))
        except ValueError:
            raise UserError(f"student {spec!r}: write teacher:K with K a number of layers, or "
                            "teacher:I,J,... with the teacher layers to keep") from None
    return spec, None


def build_student(spec: str, teacher: PreTrainedModel, teacher_tokenizer: PreTrainedTokenizerBase,
                  label_names: tuple[str, ...], layers: int = 2, hidden: int = 256,
                  tokenizer: PreTrainedTokenizerBase | None = None) -> Student:
    """The student named by ``spec``; ``layers``/``hidden`` size the BiLSTM and CNN students.

    With ``tokenizer`` (a vocabulary of its own), a ``teacher:K``, BiLSTM or CNN student gets an
    embedding table for it, initialised from the teacher's by vocabulary transfer.
    """
    kind, k = parse_spec(spec)
    if kind == "teacher":
        model, kept = truncated_teacher(teacher, k)
        student = Student(model, teacher_tokenizer, kept)
    elif kind in SMALL_STUDENTS:
        config_cls, model_cls = SMALL_STUDENTS[kind]
        width = teacher.config.hidden_size
        config = config_cls(vocab_size=len(teacher_tokenizer), embedding_dim=width,
                            hidden_size=hidden, num_hidden_layers=layers,
                            pad_token_id=teacher_tokenizer.pad_token_id,
                            num_labels=len(label_names), id2label=dict(enumerate(label_names)),
                            label2id={l: i for i, l in enumerate(label_names)},
                            architectures=[model_cls.__name__])
        model = model_cls(config)
        embeddings = teacher.get_input_embeddings().weight
        if embeddings.shape == model.embeddings.weight.shape:
            model.embeddings.weight.data.copy_(embeddings.data)
        student = Student(model, teacher_tokenizer)
    else:
        if tokenizer is not None:
            raise UserError(f"student {spec!r} brings its own tokenizer; a vocabulary of its "
                            "own is for teacher:K, bilstm and cnn students")
        return _pretrained_student(spec, teacher_tokenizer, label_names)
    if tokenizer is not None:
        student.transfer = use_vocabulary(student.model, teacher.get_input_embeddings().weight,
                                          teacher_tokenizer, tokenizer)
        student.tokenizer = tokenizer
    return student


def _pretrained_student(spec: str, teacher_tokenizer: PreTrainedTokenizerBase,
                        label_names: tuple[str, ...]) -> Student:
    """A hub name or folder, with its own tokenizer (or, lacking one, the teacher's)."""
    config = load_config(spec)
    try:
        tokenizer = load_tokenizer(spec)
    except UserError:
        tokenizer = teacher_tokenizer
        if config.vocab_size < len(tokenizer):
            raise UserError(f"student {spec!r} has no tokenizer and its vocabulary ({config.vocab_size}) "
                            f"cannot hold the teacher's ({len(tokenizer)} tokens)") from None
    return Student(load_base_classifier(spec, label_names), tokenizer)
