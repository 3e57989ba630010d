"""A student vocabulary of its own: a tokenizer trained on the task's texts, and embeddings
initialised from the teacher's by vocabulary transfer (FVT, Gee et al., 2022).

Universal-KD and KD meet only in label space, so teacher and student need not share tokens: the
teacher reads the raw text with its tokenizer, the student with this one. A task vocabulary of a
few thousand tokens removes most of a small student's parameters (its embedding table).
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .errors import UserError

SPECIAL_ROLES = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token", "bos_token",
                 "eos_token")


def train_tokenizer(base: PreTrainedTokenizerBase, texts: Iterable[str],
                    vocab_size: int) -> PreTrainedTokenizerFast:
    """A tokenizer of ``vocab_size`` tokens trained on ``texts``, of ``base``'s kind (WordPiece
    for BERT-family teachers, byte-level BPE for RoBERTa's) with its normaliser, pre-tokeniser,
    special tokens and post-processor. Transformers' ``train_new_from_iterator`` does exactly
    this on the ``tokenizers`` library's trainers.

    Training is not deterministic (ties between equally frequent merges): two trainings on the
    same texts differ in a few tokens, so callers cache the result.
    """
    texts = list(texts)
    chunks = (texts[i:i + 1000] for i in range(0, len(texts), 1000))
    return base.train_new_from_iterator(chunks, vocab_size, show_progress=False)


def trim_tokenizer(base: PreTrainedTokenizerBase, texts: Iterable[str],
                   vocab_size: int) -> PreTrainedTokenizerFast:
    """The teacher's WordPiece vocabulary cut to ``vocab_size`` tokens: its special tokens, the
    single characters that spell any word of ``texts`` (and printable ASCII), and then the
    tokens it uses most on ``texts`` (vocabulary trimming). A kept token keeps its text, so its
    embedding row is copied exactly, and a word that the teacher reads as kept tokens is read
    the same way; any other word is spelt from shorter kept pieces. Deterministic.
    """
    spec = json.loads(base.backend_tokenizer.to_str())
    if spec["model"]["type"] != "WordPiece":
        raise UserError(f"trimming needs a WordPiece teacher tokenizer, not "
                        f"{spec['model']['type']}; use vocab_method train")
    vocab, prefix = spec["model"]["vocab"], spec["model"]["continuing_subword_prefix"]
    counts = Counter(i for ids in base(list(texts), add_special_tokens=False)["input_ids"]
                     for i in ids)
    tokens = {i: t for t, i in vocab.items()}
    special = {a["content"] for a in spec["added_tokens"]}
    ascii_chars = {c for c in string.printable if not c.isspace()}
    spelling = {t for t in vocab if len(t) == 1 and (t in ascii_chars or vocab[t] in counts)}
    spelling |= {prefix + t for t in spelling if prefix + t in vocab}
    spelling |= {tokens[i] for i in counts if len(tokens[i].removeprefix(prefix)) == 1}
    keep = special | spelling
    if len(keep) > vocab_size:
        raise UserError(f"a trimmed vocabulary needs at least {len(keep)} tokens to spell the "
                        f"training texts, not {vocab_size}")
    for i, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(keep) >= vocab_size:
            break
        keep.add(tokens[i])
    new = {t: i for i, t in enumerate(sorted(keep, key=vocab.__getitem__))}
    spec["model"]["vocab"] = new
    for added in spec["added_tokens"]:
        added["id"] = new[added["content"]]
    for entry in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        entry["ids"] = [new[t] for t in entry["tokens"]]  # TemplateProcessing's [CLS], [SEP]
    kwargs = {k: v for k, v in base.init_kwargs.items() if k not in ("vocab_file", "tokenizer_file")}
    return type(base)(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **kwargs)


@dataclass
class Transfer:
    """The student's embedding table and how each row was made."""

    weight: torch.Tensor  # (student vocabulary, width)
    copied: int           # tokens in both vocabularies: the teacher's row
    averaged: int         # new tokens: the mean of the teacher's rows for their pieces
    special: int          # special tokens: the teacher's token of the same role
    unknown: int          # pieces the teacher cannot spell: its [UNK] row


def _surface(tokenizer: PreTrainedTokenizerBase, token: str) -> tuple[str, bool]:
    """A token's text and whether it continues a word (WordPiece's ``##ing``)."""
    prefix = getattr(tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None)
    if prefix and token.startswith(prefix) and len(token) > len(prefix):
        return token[len(prefix):], True
    return tokenizer.convert_tokens_to_string([token]), False


def transfer_embeddings(teacher_embeddings: torch.Tensor, teacher_tokenizer: PreTrainedTokenizerBase,
                        student_tokenizer: PreTrainedTokenizerBase) -> Transfer:
    """Fast Vocabulary Transfer: a token in both vocabularies copies the teacher's row; a special
    token takes the row of the teacher's token of the same role (its [CLS] for the student's
    [CLS]); any other token gets the mean of the teacher's rows for the teacher's tokenisation of
    its text, continuation pieces (``##ing``) read as continuations where the teacher has them."""
    old = teacher_tokenizer.get_vocab()
    new = student_tokenizer.get_vocab()
    weight = torch.empty(len(student_tokenizer), teacher_embeddings.shape[1],
                         dtype=teacher_embeddings.dtype)
    special = {}
    for role in SPECIAL_ROLES:
        mine, theirs = getattr(student_tokenizer, role, None), getattr(teacher_tokenizer, role, None)
        if mine is not None and theirs in old:
            special[new[mine]] = old[theirs]
    counts = {"copied": 0, "averaged": 0, "special": 0, "unknown": 0}
    pending = []
    for token, i in new.items():
        if i in special:
            weight[i] = teacher_embeddings[special[i]]
            counts["special"] += 1
        elif token in old:
            weight[i] = teacher_embeddings[old[token]]
            counts["copied"] += 1
        else:
            pending.append((i, *_surface(student_tokenizer, token)))
    if pending:
        pieces = teacher_tokenizer([text for _, text, _ in pending], add_special_tokens=False)
        prefix = getattr(teacher_tokenizer.backend_tokenizer.model, "continuing_subword_prefix", "")
        unk = old.get(teacher_tokenizer.unk_token, 0)
        for (i, _, continues), ids in zip(pending, pieces["input_ids"]):
            ids = [piece for piece in ids if piece != unk]
            if ids and continues and prefix:  # "ing" as the teacher's "##ing", if it has one
                first = teacher_tokenizer.convert_ids_to_tokens(ids[0])
                ids[0] = old.get(prefix + first, ids[0])
            if ids:
                weight[i] = teacher_embeddings[ids].mean(dim=0)
                counts["averaged"] += 1
            else:
                weight[i] = teacher_embeddings[unk]
                counts["unknown"] += 1
    return Transfer(weight, **counts)


def use_vocabulary(model: PreTrainedModel, teacher_embeddings: torch.Tensor,
                   teacher_tokenizer: PreTrainedTokenizerBase,
                   student_tokenizer: PreTrainedTokenizerBase) -> Transfer:
    """Give ``model`` an embedding table for ``student_tokenizer``, initialised by
    :func:`transfer_embeddings`, and the config that a stock reload of it needs."""
    if student_tokenizer.pad_token_id is None:
        raise UserError("the student's tokenizer has no padding token")
    width = model.get_input_embeddings().weight.shape[1]
    if teacher_embeddings.shape[1] != width:
        raise UserError(f"the student's embeddings are {width} wide, the teacher's "
                        f"{teacher_embeddings.shape[1]}: vocabulary transfer needs them equal")
    transfer = transfer_embeddings(teacher_embeddings.detach().float().cpu(), teacher_tokenizer,
                                   student_tokenizer)
    pad = student_tokenizer.pad_token_id
    table = nn.Embedding(len(student_tokenizer), width, padding_idx=pad)
    table.weight.data.copy_(transfer.weight)
    model.set_input_embeddings(table)
    model.config.vocab_size = len(student_tokenizer)
    model.config.pad_token_id = pad
    for role in ("bos", "eos", "sep", "cls"):
        if getattr(model.config, f"{role}_token_id", None) is not None:
            setattr(model.config, f"{role}_token_id", getattr(student_tokenizer, f"{role}_token_id"))
    embeddings = getattr(model.base_model, "embeddings", None)
    if embeddings is not None and hasattr(embeddings, "padding_idx"):
        embeddings.padding_idx = pad  # RoBERTa counts positions from it
    return transfer
