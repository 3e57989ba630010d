"""ONNX export with real ONNX Runtime: four student families, parity, int8, the budget."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ukd_compress.export.run import export_run
from ukd_compress.recipe import Recipe

from conftest import make_run, tiny


@pytest.mark.parametrize("family", ["bert", "roberta", "bilstm", "cnn"])
def test_export_parity_int8_and_latency(tmp_path, family, minilm_tokenizer):
    run = make_run(tmp_path, family, minilm_tokenizer)
    result = export_run(run, int8=True, budget_ms=60000, batches=[1, 4], seq_lens=[16], repeats=3)
    onnx_dir = run / "onnx"
    assert result["parity"]["max_abs_diff"] <= 1e-4 and result["parity"]["label_agreement"] >= 0.995
    assert result["parity"]["examples"] == 48
    assert set(result["metric_int8"]) == set(result["metric_fp32"]) == {"accuracy"}
    graph = onnx.load(str(onnx_dir / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["logits"]
    assert not [i.name for i in graph.initializer if "pseudo" in i.name]
    io = json.loads((onnx_dir / "io.json").read_text())
    assert io["labels"] == ["negative", "positive"] and "input_ids" in io["inputs"]
    trained_at = Recipe.from_yaml(run / "recipe.yaml").task.max_length
    assert io["max_length"] == result["max_length"] == trained_at  # served as trained
    # a plain InferenceSession, as another stack would use it, with dynamic batch and length
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(onnx_dir)
    for texts in (["a fine film"], ["bad", "a long and winding, very tedious story", "ok"]):
        enc = tokenizer(texts, padding=True, return_tensors="np")
        feed = {k: v.astype(np.int64) for k, v in enc.items() if k in io["inputs"]}
        assert session.run(["logits"], feed)[0].shape == (len(texts), 2)
    # a text's answer does not depend on the padding its batch adds (adaptive batching mixes
    # lengths): the BiLSTM's backward pass starts at the text's own last token
    def logits(texts: list[str]) -> np.ndarray:
        enc = tokenizer(texts, padding=True, return_tensors="np")
        return session.run(["logits"], {k: v.astype(np.int64) for k, v in enc.items()
                                        if k in io["inputs"]})[0]
    alone, mixed = logits(["a fine film"]), logits(["a fine film", "a long, winding, tedious story"])
    assert np.allclose(alone[0], mixed[0], atol=1e-4), (alone, mixed)
    latency = json.loads((run / "latency.json").read_text())
    models = {r["model"] for r in latency["rows"]}
    assert models == {"teacher (pytorch)", "student (pytorch)", "student (ort fp32)", "student (ort int8)"}
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in latency["rows"])
    assert latency["within_budget"] and (run / "latency.png").stat().st_size > 1000
    assert json.loads((run / "report.json").read_text())["export"]["parity"] == result["parity"]
    assert not (run / "onnx.tmp").exists()


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_transformer_onnx_loads_with_optimum(tmp_path, family, minilm_tokenizer):
    from optimum.onnxruntime import ORTModelForSequenceClassification

    run = make_run(tmp_path, family, minilm_tokenizer)
    export_run(run, batches=[1], seq_lens=[8], repeats=1)
    ort_model = ORTModelForSequenceClassification.from_pretrained(run / "onnx")
    torch_model = AutoModelForSequenceClassification.from_pretrained(run / "student").eval()
    enc = minilm_tokenizer(["an utterly charming film", "no"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch_model(**enc).logits
    assert torch.allclose(ort_model(**enc).logits, expected, atol=1e-4)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ukd_compress", "export", *args],
                          capture_output=True, text=True, timeout=600)


def test_budget_fails_and_passes_and_bad_input_leaves_artifacts(tmp_path, minilm_tokenizer):
    run = make_run(tmp_path, "cnn", minilm_tokenizer)
    ok = cli(str(run), "--budget-ms", "60000", "--seq-len", "16", "--repeats", "3")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "parity" in ok.stdout and "student (ort fp32)" in ok.stdout
    missed = cli(str(run), "--budget-ms", "0.000001", "--seq-len", "16", "--repeats", "3")
    assert missed.returncode == 1 and "budget missed" in missed.stderr
    before = (run / "onnx" / "model.onnx").read_bytes()
    bad = cli(str(run), "--budget-ms", "fast")
    assert bad.returncode == 2 and "fast" in bad.stderr and "Traceback" not in bad.stderr
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    no_student = cli(str(empty))
    assert no_student.returncode == 2 and "not a finished run folder" in no_student.stderr
    assert (run / "onnx" / "model.onnx").read_bytes() == before


def test_a_corrupt_onnx_file_is_a_clear_error(tmp_path):
    from ukd_compress.export.onnx_export import check_no_pseudo_classifiers
    from ukd_compress.export.runtime import ort_session
    from ukd_compress.errors import UserError

    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"\x08\x07not really a protobuf graph")
    with pytest.raises(UserError, match="ONNX Runtime cannot load"):
        ort_session(corrupt)
    with pytest.raises(UserError, match="not a readable ONNX model"):
        check_no_pseudo_classifiers(corrupt, tiny("cnn").config)


def test_a_graph_with_more_weights_than_a_stock_model_is_refused(tmp_path, minilm_tokenizer):
    """Whatever the exporter names them: here a head of extra layers that feeds the logits."""
    from ukd_compress.export.onnx_export import _export_small, check_no_pseudo_classifiers
    from ukd_compress.errors import CheckFailed
    from ukd_compress.strip import save_model_folder

    model = tiny("cnn")
    save_model_folder(model, minilm_tokenizer, tmp_path / "stock")
    _export_small(tmp_path / "stock", tmp_path / "stock-onnx", 18)
    check_no_pseudo_classifiers(tmp_path / "stock-onnx" / "model.onnx", model.config)
    width = model.config.layer_widths[-1]
    model.classifier = torch.nn.Sequential(torch.nn.Linear(width, width), model.classifier)
    with pytest.raises(CheckFailed, match="weights, where a stock ukd_cnn model has"):
        check_no_pseudo_classifiers(export_module(model, tmp_path / "grown.onnx"), model.config)


def export_module(model: torch.nn.Module, path):
    from ukd_compress.export.onnx_export import _LogitsOnly

    ids = torch.ones(2, 8, dtype=torch.long)
    torch.onnx.export(_LogitsOnly(model.eval()), (ids, torch.ones_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      opset_version=18, dynamo=False)
    return path
