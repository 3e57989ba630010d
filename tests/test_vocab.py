"""A student with its own vocabulary: training it, vocabulary transfer, and the whole path on it."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertTokenizer

from ukd_compress.tasks import subsample
from ukd_compress.errors import UserError
from ukd_compress.models import offline_minilm_folder
from ukd_compress.pipeline import student_vocabulary
from ukd_compress.recipe import Recipe
from ukd_compress.students import build_student
from ukd_compress.tasks import get_task, load_glue
from ukd_compress.vocab import train_tokenizer, transfer_embeddings, trim_tokenizer

from conftest import DATA_DIR, tiny
from test_cli import SMALL, ukd


@pytest.fixture(scope="module")
def sst2_train():
    return subsample(load_glue(get_task("sst2"), DATA_DIR)["train"], 2000, 0)


@pytest.fixture(scope="module")
def small_tokenizer(minilm_tokenizer, sst2_train):
    return train_tokenizer(minilm_tokenizer, sst2_train["text_a"], 1000)


def test_a_trained_vocabulary_keeps_the_teachers_normalisation_and_special_tokens(
        minilm_tokenizer, small_tokenizer):
    assert len(small_tokenizer) == 1000
    text = "A GORGEOUS, Witty Film."
    pieces = small_tokenizer.tokenize(text)
    assert pieces[0] == "a" and "," in pieces  # lower-cased and split at punctuation as before
    for role in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token"):
        assert getattr(small_tokenizer, role) == getattr(minilm_tokenizer, role)
    ids = small_tokenizer(text)["input_ids"]
    assert ids[0] == small_tokenizer.cls_token_id and ids[-1] == small_tokenizer.sep_token_id
    assert ids != minilm_tokenizer(text)["input_ids"]  # the same text, other ids


def test_transfer_copies_shared_rows_averages_new_ones_and_maps_special_tokens(
        minilm_tokenizer, small_tokenizer):
    torch.manual_seed(0)
    old = torch.randn(len(minilm_tokenizer), 8)
    transfer = transfer_embeddings(old, minilm_tokenizer, small_tokenizer)
    teacher_vocab, vocab = minilm_tokenizer.get_vocab(), small_tokenizer.get_vocab()
    assert transfer.weight.shape == (1000, 8)
    assert transfer.copied + transfer.averaged + transfer.special + transfer.unknown == 1000
    assert transfer.copied > 500 and transfer.averaged > 0 and transfer.special == 5
    assert torch.equal(transfer.weight[vocab["film"]], old[teacher_vocab["film"]])
    # special tokens by role, although their ids differ between the vocabularies
    assert small_tokenizer.cls_token_id != minilm_tokenizer.cls_token_id
    assert torch.equal(transfer.weight[small_tokenizer.cls_token_id],
                       old[minilm_tokenizer.cls_token_id])
    new_words = [t for t in vocab if t not in teacher_vocab and not t.startswith("##")]
    word = new_words[0]
    pieces = minilm_tokenizer(word, add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    assert torch.allclose(transfer.weight[vocab[word]], old[pieces].mean(0))
    # a continuation piece is read as the teacher's continuation piece where it has one
    suffixes = [t for t in vocab if t.startswith("##") and t not in teacher_vocab
                and "##" + minilm_tokenizer.tokenize(t[2:])[0] in teacher_vocab]
    piece = suffixes[0]
    expected = minilm_tokenizer(piece[2:], add_special_tokens=False)["input_ids"]
    expected[0] = teacher_vocab["##" + minilm_tokenizer.convert_ids_to_tokens(expected[0])]
    assert torch.allclose(transfer.weight[vocab[piece]], old[expected].mean(0))


def test_a_trimmed_vocabulary_is_the_teachers_most_used_tokens(minilm_tokenizer, sst2_train):
    texts = sst2_train["text_a"]
    trimmed = trim_tokenizer(minilm_tokenizer, texts, 1500)
    assert len(trimmed) == 1500
    assert trimmed.get_vocab() == trim_tokenizer(minilm_tokenizer, texts, 1500).get_vocab()
    teacher_vocab = minilm_tokenizer.get_vocab()
    assert set(trimmed.get_vocab()) <= set(teacher_vocab)
    transfer = transfer_embeddings(torch.randn(len(minilm_tokenizer), 4), minilm_tokenizer, trimmed)
    assert transfer.averaged == 0 and transfer.copied == 1495 and transfer.special == 5
    # a text of frequent words is read exactly as the teacher reads it, with other ids
    text = "the film is good , but not funny ."
    assert trimmed.tokenize(text) == minilm_tokenizer.tokenize(text)
    assert trimmed(text)["input_ids"] != minilm_tokenizer(text)["input_ids"]
    ids = trimmed(text, "a pair")["input_ids"]
    assert ids[0] == trimmed.cls_token_id and ids.count(trimmed.sep_token_id) == 2
    # a word the trimmed vocabulary lacks is spelt from shorter pieces, never [UNK]
    rare = "Zyxomphlactic quibbles!"
    assert trimmed.unk_token not in trimmed.tokenize(rare)
    assert len(trimmed.tokenize(rare)) > len(minilm_tokenizer.tokenize(rare))
    with pytest.raises(UserError, match="to spell the training texts"):
        trim_tokenizer(minilm_tokenizer, texts, 100)


@pytest.mark.parametrize("spec", ["teacher:2", "bilstm", "cnn"])
def test_students_get_an_embedding_table_for_their_vocabulary(spec, minilm_tokenizer,
                                                              small_tokenizer):
    teacher = tiny("bert")
    student = build_student(spec, teacher, minilm_tokenizer, ("negative", "positive"), 1, 16,
                            small_tokenizer)
    table = student.model.get_input_embeddings()
    assert table.weight.shape == (1000, 32) and student.tokenizer is small_tokenizer
    assert student.model.config.vocab_size == 1000
    assert student.model.config.pad_token_id == small_tokenizer.pad_token_id
    film = small_tokenizer.get_vocab()["film"]
    assert torch.equal(table.weight[film],
                       teacher.get_input_embeddings().weight[minilm_tokenizer.get_vocab()["film"]])
    enc = small_tokenizer(["a witty film", "dull"], padding=True, return_tensors="pt")
    assert student.model(**enc).logits.shape == (2, 2)


def test_a_pretrained_student_brings_its_own_tokenizer(minilm_tokenizer, small_tokenizer):
    with pytest.raises(UserError, match="for teacher:K, bilstm and cnn"):
        Recipe().replace("student", spec="distilroberta", vocab_size=1000).validate()
    with pytest.raises(UserError, match="not both"):
        Recipe().replace("student", vocab_size=1000, tokenizer="x").validate()
    with pytest.raises(UserError, match="at least 200"):
        Recipe().replace("student", vocab_size=50).validate()


def test_a_trained_vocabulary_is_cached_so_paired_runs_read_the_same_one(
        minilm_tokenizer, sst2_train, tmp_path):
    recipe = Recipe().replace("student", vocab_size=500, vocab_method="train")
    first = student_vocabulary(recipe, minilm_tokenizer, sst2_train)
    second = student_vocabulary(recipe, minilm_tokenizer, sst2_train)
    assert len(first) == 500 and first.get_vocab() == second.get_vocab()
    # a resumed run reads the vocabulary it saved, whatever the recipe says
    first.save_pretrained(tmp_path / "saved")
    other = Recipe().replace("student", vocab_size=700)
    assert student_vocabulary(other, minilm_tokenizer, sst2_train,
                              tmp_path / "saved").get_vocab() == first.get_vocab()
    assert student_vocabulary(Recipe(), minilm_tokenizer, sst2_train) is None
    named = Recipe().replace("student", tokenizer=str(tmp_path / "saved"))  # --student-tokenizer
    assert student_vocabulary(named, minilm_tokenizer, sst2_train).get_vocab() == first.get_vocab()
    slow = BertTokenizer.from_pretrained(offline_minilm_folder())
    with pytest.raises(UserError, match="no fast"):
        student_vocabulary(recipe, slow, sst2_train)


def test_a_run_with_its_own_vocabulary_end_to_end(tmp_path):
    """Teacher and student read the same text through different tokenizers; the stripped
    folder is stock, and its ONNX export matches PyTorch."""
    out = tmp_path / "run"
    result = ukd("distill", *SMALL, "--student-vocab", "400", "--output", str(out), "--export")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "student vocabulary: 400 tokens" in result.stdout
    report = json.loads((out / "report.json").read_text())
    vocabulary = report["student"]["vocabulary"]
    assert vocabulary["size"] == 400 and vocabulary["teacher_size"] == 30522
    assert report["student"]["embedding_params"] == 400 * 384
    assert report["teacher"]["embedding_params"] == 30522 * 384
    assert report["student"]["params"] < report["teacher"]["params"] - 29000 * 384
    student = AutoModelForSequenceClassification.from_pretrained(out / "student")
    tokenizer = AutoTokenizer.from_pretrained(out / "student")
    teacher_tokenizer = AutoTokenizer.from_pretrained(report["teacher"]["name"])
    text = ("A man is sleeping.", "Someone is asleep.")
    assert tokenizer(*text)["input_ids"] != teacher_tokenizer(*text)["input_ids"]
    assert len(tokenizer) == student.config.vocab_size == 400
    assert student(**tokenizer(*text, return_tensors="pt")).logits.shape == (1, 2)
    export = report["export"]
    assert export["parity"]["max_abs_diff"] <= 1e-4
    assert len(AutoTokenizer.from_pretrained(out / "onnx")) == 400
    assert export["onnx_bytes"]["int8"] < export["onnx_bytes"]["fp32"]
    n = export["parity"]["examples"]
    accuracy = report["student"]["metrics"]["validation"]["accuracy"]
    assert abs(accuracy - export["metric_fp32"]["accuracy"]) <= 100 / n + 1e-9
