"""Tokenisation, collation and a resumable batch order.

Batches keep raw text until collation, where each model's own tokenizer reads it: the teacher
and the student may use different tokenizers, since Universal-KD only matches their logits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import datasets
import torch
from transformers import PreTrainedTokenizerBase
from transformers.trainer_pt_utils import get_length_grouped_indices


@dataclass
class Batch:
    """One batch: example ids, labels, and inputs for the student and (if another) the teacher."""

    idx: torch.Tensor
    labels: torch.Tensor
    student_inputs: dict[str, torch.Tensor]
    teacher_inputs: dict[str, torch.Tensor]

    def to(self, device: torch.device) -> "Batch":
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        student = move(self.student_inputs)
        teacher = student if self.teacher_inputs is self.student_inputs else move(self.teacher_inputs)
        return Batch(self.idx.to(device), self.labels.to(device), student, teacher)


def tokenize(tokenizer: PreTrainedTokenizerBase, text_a: list[str], text_b: list[str | None],
             max_length: int) -> dict[str, torch.Tensor]:
    """Dynamically padded model inputs for a list of single texts or pairs."""
    pairs = None if text_b[0] is None else text_b
    return dict(tokenizer(text_a, pairs, padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt"))


class Collator:
    """Rows of a normalised split -> a :class:`Batch`, tokenised by each model's tokenizer."""

    def __init__(self, student_tokenizer: PreTrainedTokenizerBase,
                 teacher_tokenizer: PreTrainedTokenizerBase | None, max_length: int,
                 regression: bool = False):
        self.student_tokenizer, self.teacher_tokenizer = student_tokenizer, teacher_tokenizer
        self.max_length, self.regression = max_length, regression

    def __call__(self, rows: dict[str, list]) -> Batch:
        student = tokenize(self.student_tokenizer, rows["text_a"], rows["text_b"], self.max_length)
        teacher = student
        if self.teacher_tokenizer is not None and self.teacher_tokenizer is not self.student_tokenizer:
            teacher = tokenize(self.teacher_tokenizer, rows["text_a"], rows["text_b"], self.max_length)
        labels = torch.tensor(rows["label"], dtype=torch.float32 if self.regression else torch.long)
        return Batch(torch.tensor(rows["idx"]), labels, student, teacher)


def epoch_order(size: int, seed: int, epoch: int, lengths: list[int] | None = None,
                batch_size: int = 1) -> torch.Tensor:
    """The example order of one epoch: a permutation fixed by (seed, epoch), so a resumed run
    replays exactly the batches it had not yet seen.

    With ``lengths``, batches hold examples of similar length (Transformers' group-by-length
    order): batches are padded to their longest text, and on SST-2 a random batch is about 3x
    padding, a grouped one about 1.01x.
    """
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    if lengths is None:
        return torch.randperm(size, generator=generator)
    return torch.tensor(get_length_grouped_indices(lengths, batch_size, generator=generator))


def text_lengths(split: datasets.Dataset) -> list[int]:
    """Characters per example (both texts of a pair): a tokenizer-free proxy for its length."""
    return [len(a) + len(b or "") for a, b in zip(split["text_a"], split["text_b"])]


def batches(split: datasets.Dataset, collate: Collator, batch_size: int,
            order: torch.Tensor | None = None, start: int = 0, rank: int = 0,
            world: int = 1) -> Iterator[Batch]:
    """Batches of ``split`` in ``order`` (default: as stored), from batch ``start`` on.

    Written here rather than with a DataLoader because a resumed run must skip exactly the batches
    already seen, and each of ``world`` processes takes every ``world``-th batch.
    """
    order = torch.arange(len(split)) if order is None else order
    count = num_batches(len(split), batch_size)
    count -= count % world  # every process takes as many steps as the others
    for b in range(start, count):
        if b % world != rank:
            continue
        yield collate(split[order[b * batch_size:(b + 1) * batch_size].tolist()])


def num_batches(size: int, batch_size: int) -> int:
    return (size + batch_size - 1) // batch_size


def subsample(split: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """At most ``limit`` examples, a seeded random subset; ``idx`` is renumbered 0..n-1."""
    if limit is not None and limit < len(split):
        split = split.shuffle(seed=seed).select(range(limit))
    return split.map(lambda _, i: {"idx": i}, with_indices=True)
