"""Tokenisation, collation and a resumable batch order.

Batches keep raw text until collation, where each model's own tokenizer reads it: the teacher
and the student may use different tokenizers, since Universal-KD only matches their logits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import datasets
import torch
from transformers import PreTrainedTokenizerBase
from transformers.trainer_pt_utils import get_length_grouped_indices


@dataclass
class Batch:
    """One batch: example ids, labels, and inputs for the student and (if another) the teacher.

    ``idx`` stays on the CPU: the teacher cache looks it up there, with no device sync.
    """

    idx: torch.Tensor
    labels: torch.Tensor
    student_inputs: dict[str, torch.Tensor]
    teacher_inputs: dict[str, torch.Tensor]

    def to(self, device: torch.device) -> "Batch":
        move = lambda d: {k: v.to(device, non_blocking=True) for k, v in d.items()}  # noqa: E731
        student = move(self.student_inputs)
        teacher = student if self.teacher_inputs is self.student_inputs else move(self.teacher_inputs)
        return Batch(self.idx, self.labels.to(device, non_blocking=True), student, teacher)

    def pin_memory(self) -> "Batch":
        """Page-locked copies, so that the copy to a GPU overlaps compute (DataLoader calls it)."""
        pin = lambda d: {k: v.pin_memory() for k, v in d.items()}  # noqa: E731
        student = pin(self.student_inputs)
        teacher = student if self.teacher_inputs is self.student_inputs else pin(self.teacher_inputs)
        return Batch(self.idx.pin_memory(), self.labels.pin_memory(), student, teacher)


def tokenize(tokenizer: PreTrainedTokenizerBase, text_a: list[str], text_b: list[str | None],
             max_length: int) -> dict[str, torch.Tensor]:
    """Dynamically padded model inputs for a list of single texts or pairs."""
    pairs = None if text_b[0] is None else list(text_b)
    return dict(tokenizer(list(text_a), pairs, padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt"))


class Collator:
    """Rows of a normalised split -> a :class:`Batch`, tokenised by each model's tokenizer.

    A split passed through :meth:`tokenized` carries each model's token ids, and its batches
    are only padded (about 10x cheaper than tokenising pairs anew at every step); any other
    split is tokenised batch by batch.
    """

    PREFIXES = ("student_", "teacher_")

    def __init__(self, student_tokenizer: PreTrainedTokenizerBase,
                 teacher_tokenizer: PreTrainedTokenizerBase | None, max_length: int,
                 regression: bool = False):
        self.student_tokenizer, self.teacher_tokenizer = student_tokenizer, teacher_tokenizer
        self.max_length, self.regression = max_length, regression
        self.separate_teacher = (teacher_tokenizer is not None
                                 and teacher_tokenizer is not student_tokenizer)

    def _tokenizers(self) -> list[tuple[str, PreTrainedTokenizerBase]]:
        pairs = [("student_", self.student_tokenizer)]
        return pairs + ([("teacher_", self.teacher_tokenizer)] if self.separate_teacher else [])

    def tokenized(self, split: datasets.Dataset) -> datasets.Dataset:
        """``split`` with token id columns (unpadded) for the student and a separate teacher."""
        def encode(rows: dict[str, list]) -> dict[str, list]:
            pairs = None if rows["text_b"][0] is None else rows["text_b"]
            out = {}
            for prefix, tokenizer in self._tokenizers():
                ids = tokenizer(rows["text_a"], pairs, truncation=True, max_length=self.max_length)
                out.update({prefix + k: v for k, v in ids.items()})
            return out

        if "student_input_ids" in split.column_names:
            return split
        return split.map(encode, batched=True, batch_size=1000, keep_in_memory=True)

    def _inputs(self, rows: dict[str, list], prefix: str,
                tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
        columns = {k[len(prefix):]: v for k, v in rows.items() if k.startswith(prefix)}
        if not columns:
            return tokenize(tokenizer, rows["text_a"], rows["text_b"], self.max_length)
        return dict(tokenizer.pad(columns, return_tensors="pt"))

    def __call__(self, rows: dict[str, list]) -> Batch:
        student = self._inputs(rows, "student_", self.student_tokenizer)
        teacher = (self._inputs(rows, "teacher_", self.teacher_tokenizer)
                   if self.separate_teacher else student)
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


def by_length(split: datasets.Dataset) -> torch.Tensor:
    """The split's examples shortest first: inference batches pad least (on SST-2 about 3x fewer
    tokens than in stored order). ``order.argsort()`` puts outputs back in the split's order."""
    return torch.tensor(text_lengths(split)).argsort()


def text_lengths(split: datasets.Dataset) -> list[int]:
    """Characters per example (both texts of a pair): a tokenizer-free proxy for its length."""
    return [len(a) + len(b or "") for a, b in zip(split["text_a"], split["text_b"])]


def text_keys(split: datasets.Dataset) -> torch.Tensor:
    """An int64 key per example from its texts: equal texts, equal keys, in any split or order."""
    def key(a: str, b: str | None) -> int:
        digest = hashlib.blake2b(f"{a}\0{b or ''}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little", signed=True)
    return torch.tensor([key(a, b) for a, b in zip(split["text_a"], split["text_b"])],
                        dtype=torch.int64)


class _Rows(torch.utils.data.Dataset):
    """A split read a batch at a time: ``rows[[3, 1, 4]]`` is the collated batch of those rows."""

    def __init__(self, split: datasets.Dataset, collate: Collator):
        self.split, self.collate = split, collate

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, rows: list[int]) -> Batch:
        return self.collate(self.split[rows])


def batches(split: datasets.Dataset, collate: Collator, batch_size: int,
            order: torch.Tensor | None = None, start: int = 0, rank: int = 0,
            world: int = 1, workers: int = 0) -> Iterable[Batch]:
    """Batches of ``split`` in ``order`` (default: as stored), from batch ``start`` on.

    The batches are fixed by ``order`` alone, so a resumed run skips exactly those already seen,
    and each of ``world`` processes takes every ``world``-th batch. With ``workers``, a
    DataLoader collates them in background processes into page-locked memory for a GPU.
    """
    order = torch.arange(len(split)) if order is None else order
    count = num_batches(len(split), batch_size)
    count -= count % world  # every process takes as many steps as the others
    chosen = [order[b * batch_size:(b + 1) * batch_size].tolist()
              for b in range(start, count) if b % world == rank]
    if workers == 0:
        return (collate(split[rows]) for rows in chosen)
    # A generator of its own: seeding the workers must not draw from the global RNG, which
    # drives dropout (else a run with workers, or a resumed one, would train differently).
    return torch.utils.data.DataLoader(_Rows(split, collate), sampler=chosen, batch_size=None,
                                       num_workers=workers, pin_memory=torch.cuda.is_available(),
                                       prefetch_factor=4, generator=torch.Generator())


def num_batches(size: int, batch_size: int) -> int:
    return (size + batch_size - 1) // batch_size
