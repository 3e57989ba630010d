"""The benchmarks' own arithmetic (FLOPs floors, tables) and the quality study end to end."""

import json
import subprocess
import sys

import pytest
from transformers import BertConfig

from ukd_compress.benchmarks.infer import encoder_flops
from ukd_compress.benchmarks.quality import (Run, load_study, parse_method, parse_student, run_recipe,
                                             study_runs)
from ukd_compress.benchmarks.scale import projected_minutes
from ukd_compress.distill import device_type
from ukd_compress.errors import UserError
from ukd_compress.recipe import DEFAULT_BATCH
from ukd_compress.benchmarks.results import markdown_table, write_results
from ukd_compress.students.small import CNNConfig


def test_bert_base_flops_match_the_known_figure():
    # BERT-base at 128 tokens: ~2 x 85M encoder weights x 128 tokens + attention = 22.35 GFLOPs
    flops = encoder_flops(BertConfig(), batch=1, seq_len=128)
    assert abs(flops / 1e9 - 22.35) < 0.01
    assert encoder_flops(BertConfig(), batch=32, seq_len=128) == 32 * flops
    assert encoder_flops(CNNConfig(), 1, 128) is None  # no encoder formula for the CNN


def test_results_are_json_markdown_and_png(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.bar(["a"], [1])
    table = markdown_table(["mode", "req/s"], [["batching", 10.5]])
    assert table.splitlines() == ["| mode | req/s |", "|---|---|", "| batching | 10.5 |"]
    path = write_results("demo", {"x": 1}, table, fig, out=tmp_path)
    data = json.loads(path.read_text())
    assert data["x"] == 1 and data["benchmark"] == "demo" and "cpu_threads" in data["machine"]
    assert (tmp_path / "demo.md").read_text() == table
    assert (tmp_path / "demo.png").stat().st_size > 1000
    assert not list(tmp_path.glob("*.tmp*"))


def test_quality_study_is_paired_resumable_and_written(tmp_path):
    args = [sys.executable, "-m", "ukd_compress.benchmarks", "quality", "--task", "rte", "--train-examples",
            "64", "--epochs", "1", "--students", "teacher:1", "--methods",
            "kd,ukd[teacher_layers=window,teacher_gate=correct,gamma=0.25]", "--seeds", "2", "--jobs", "2",
            "--workdir", str(tmp_path / "runs"), "--name", "q", "--results-dir", str(tmp_path)]
    first = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    data = json.loads((tmp_path / "q.json").read_text())
    assert len(data["rows"]) == 4 and data["teacher"]["rte"] > 0
    row = data["rows"][-1]
    assert (row["method"], row["variant"], row["seed"]) == (
        "ukd", "teacher_layers=window,teacher_gate=correct,gamma=0.25", 1)
    assert {"task", "train_examples", "epochs", "student", "metric"} <= set(row)
    recipe = (tmp_path / "runs" / f"{Run(**{k: row[k] for k in Run.__dataclass_fields__}).name}"
              / "recipe.yaml").read_text()
    assert "teacher_layers: window" in recipe and "teacher_gate: correct" in recipe
    assert "gamma: 0.25" in recipe and "seed: 1" in recipe
    variant = next(s for s in data["summary"] if s["method"].startswith("ukd["))
    by_seed = {(r["method"], r["seed"]): r["metric"] for r in data["rows"]}
    assert variant["paired"]["0"] == pytest.approx(by_seed[("ukd", 0)] - by_seed[("kd", 0)], abs=0.01)
    assert "- kd, paired" in (tmp_path / "q.md").read_text()
    assert (tmp_path / "q.png").stat().st_size > 1000
    reports = sorted((tmp_path / "runs").glob("*/report.json"))
    stamps = [p.stat().st_mtime_ns for p in reports]
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads((tmp_path / "q.json").read_text())["rows"] == data["rows"]
    assert [p.stat().st_mtime_ns for p in reports] == stamps  # read back, not run again


def test_a_method_variant_names_real_knobs():
    assert parse_method("ukd[teacher_layers=window,gamma=0.25]") == (
        "ukd", "teacher_layers=window,gamma=0.25", {"teacher_layers": "window", "gamma": 0.25})
    for bad in ("ukd[colour=red]", "magic", "ukd[gamma]"):
        with pytest.raises(UserError):
            parse_method(bad)


def test_a_row_may_have_its_own_seeds_and_the_command_line_overrides_all(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text("seeds: 3\nrows:\n"
                     "  - {task: sst2, train_examples: 100, epochs: 1, students: [cnn], methods: [kd], seeds: 5}\n"
                     "  - {task: rte, train_examples: 100, epochs: 1, students: [cnn], methods: [kd]}\n")
    seeds = lambda runs, task: [r.seed for r in runs if r.task == task]
    runs = study_runs(load_study(study, {}))
    assert seeds(runs, "sst2") == [0, 1, 2, 3, 4] and seeds(runs, "rte") == [0, 1, 2]
    runs = study_runs(load_study(study, {"seeds": 2}))
    assert seeds(runs, "sst2") == seeds(runs, "rte") == [0, 1]


def test_a_row_may_set_the_batch_of_its_teacher_and_students(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text("seeds: 1\nrows:\n"
                     "  - {task: sst2, train_examples: 100, epochs: 1, batch_size: 256, students: [cnn], methods: [kd]}\n"
                     "  - {task: sst2, train_examples: 100, epochs: 1, students: [cnn], methods: [kd]}\n")
    batched, default = study_runs(load_study(study, {}))
    assert batched.budget != default.budget  # each batch fine-tunes its own teacher
    assert batched.name != default.name
    recipe = run_recipe(batched, "T", None)
    assert recipe.teacher.finetune_batch_size == recipe.training.batch_size == 256
    assert recipe.teacher.finetune_lr == pytest.approx(2.83e-4, rel=1e-3)  # the square-root rule
    assert run_recipe(default, "T", None).training.batch_size == DEFAULT_BATCH[device_type()]


def test_a_student_variant_names_real_knobs():
    assert parse_student("teacher:2[vocab_size=8000,vocab_method=trim]") == (
        "teacher:2", {"vocab_size": 8000, "vocab_method": "trim"})
    assert parse_student("bilstm") == ("bilstm", {})
    for bad in ("teacher:2[colour=red]", "teacher:2[vocab_size]", "a]b"):
        with pytest.raises(UserError):
            parse_student(bad)


def test_scale_bench_times_every_phase_of_both_pairs(tmp_path, monkeypatch):
    import ukd_compress.benchmarks.scale as scale

    for config in scale.CONFIGS.values():  # the headline's code path at a test's size
        monkeypatch.setitem(config, "hidden_size", 32)
        monkeypatch.setitem(config, "num_attention_heads", 2)
        monkeypatch.setitem(config, "intermediate_size", 64)
        monkeypatch.setitem(config, "num_hidden_layers", min(config["num_hidden_layers"], 4))
    written = {}
    monkeypatch.setattr(scale, "write_results",
                        lambda name, data, md, fig: written.update(name=name, md=md))
    data = scale.run(batch_size=4, steps=5)
    assert written["name"] == "scale-cpu" and "projected headline command" in written["md"]
    for pair in data["pairs"].values():
        assert set(pair["phases"]) == {"teacher_finetune", "cache_fill", "student_kd", "student_ukd"}
        for phase in pair["phases"].values():
            assert phase["examples_per_s"] > 0 and 0 < phase["mfu"] < 1 and phase["peak_mib"] > 0
    assert data["projected_headline_minutes"] == scale.projected_minutes(data["phases"], 8000)


def test_projection_adds_up_the_headline_command():
    phases = {"teacher_finetune": {"examples_per_s": 100.0}, "cache_fill": {"examples_per_s": 1000.0},
              "student_ukd": {"examples_per_s": 500.0}}
    # 3 x 1000/100 + (10000 + 19647)/1000 + 1000/1000 + 6 x 1000/500 = 30 + 29.647 + 1 + 12 s
    assert projected_minutes(phases, train=1000) == round((30 + 29.647 + 1 + 12) / 60, 1)


def test_vocab_bench_splits_accuracy_by_the_texts_a_smaller_vocabulary_spells_otherwise(
        minilm_tokenizer):
    import numpy as np

    from ukd_compress.benchmarks.vocab import respelt, split_accuracy
    from ukd_compress.vocab import trim_tokenizer

    small = trim_tokenizer(minilm_tokenizer, ["a good film", "a bad film"] * 3, 300)
    mask = respelt(small, minilm_tokenizer, ["a good film", "an unforgettable masterpiece"])
    assert mask.tolist() == [False, True]
    split = split_accuracy([np.array([True, False])], [np.array([True, True])], mask)
    assert split == {"respelt_share": 0.5, "on_respelt": 0.0, "base_on_respelt": 100.0,
                     "on_rest": 100.0, "base_on_rest": 100.0}
    assert split_accuracy([np.array([True])], [np.array([True])], np.array([False])) == {
        "respelt_share": 0.0}
