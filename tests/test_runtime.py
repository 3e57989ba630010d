"""The torch-free runtime the service answers with: its tokenisation is Transformers' own."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ukd_compress.errors import UserError
from ukd_compress.export.runtime import Encoder
from ukd_compress.tasks import get_task, load_glue
from ukd_compress.vocab import train_tokenizer

from conftest import DATA_DIR


@pytest.fixture(scope="module")
def rte_dev():
    return load_glue(get_task("rte"), DATA_DIR)["validation"].select(range(40))


def transformers_encoding(tokenizer, first, second, max_length):
    return tokenizer(first, second, truncation=True, max_length=max_length, padding=True,
                     return_tensors="np")


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("max_length", [12, 128])
def test_encoder_gives_the_fast_tokenizers_inputs(minilm_tokenizer, rte_dev, tmp_path,
                                                  padding_side, max_length):
    """Single texts and pairs, cut (longest first) and not cut, padded on either side."""
    tokenizer = train_tokenizer(minilm_tokenizer, list(rte_dev["text_a"]), 400) if max_length == 12 \
        else copy.deepcopy(minilm_tokenizer)  # the fixture is shared: change a copy
    tokenizer.padding_side = padding_side
    tokenizer.save_pretrained(tmp_path)
    encode = Encoder(tmp_path, max_length)
    first, second = list(rte_dev["text_a"]), list(rte_dev["text_b"])
    for pairs in (None, second):
        expected = transformers_encoding(tokenizer, first, pairs, max_length)
        got = encode(first, pairs)
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert got["input_ids"].shape[1] == (12 if max_length == 12 else expected["input_ids"].shape[1])


def test_encoder_without_a_fast_tokenizer_is_a_clear_error(minilm_tokenizer, tmp_path):
    minilm_tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer.json"):
        Encoder(tmp_path, 128)


def test_export_and_service_import_no_training():
    """A fresh process that imports every module of export/ and service/ loads neither the loop,
    teacher fine-tuning, nor a run's pipeline."""
    import subprocess
    import sys

    modules = ["ukd_compress.export." + m for m in ("run", "bento", "onnx_export", "latency")]
    modules += ["ukd_compress.service." + m for m in ("service", "jobs", "model", "supervise")]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m in ('ukd_compress.distill', "
              "'ukd_compress.teacher', 'ukd_compress.pipeline')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
