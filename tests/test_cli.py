"""The ukd-compress command as a user runs it: a real process, real offline data and teacher."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import tiny

# Few examples and steps: this proves the path, not the quality (see benchmarks/ for that).
SMALL = ["--task", "rte", "--max-train-samples", "64", "--max-eval-samples", "32",
         "--batch-size", "16", "--epochs", "1"]


def ukd(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ukd_compress", *args], capture_output=True,
                          text=True, timeout=900, env=os.environ.copy(), **kwargs)


def assert_clean_failure(result: subprocess.CompletedProcess, message: str, output: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert not output.exists() and not output.with_name(output.name + ".partial").exists()


def test_distill_end_to_end_on_real_offline_data(tmp_path):
    out = tmp_path / "run"
    result = ukd("distill", *SMALL, "--student", "teacher:2", "--output", str(out), "--export")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "teacher" in result.stdout + result.stderr and "student" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "rte" and report["train_examples"] == 64
    assert report["method"]["name"] == "ukd" and report["method"]["teacher_cache"]
    assert report["method"]["teacher_cache_prefilled"] == 64  # stage 1 read every example
    assert report["student"]["params"] < report["teacher"]["params"]
    # the report's (fp32) dev accuracy agrees with ONNX Runtime's on the exported student, to
    # one example
    n = report["export"]["parity"]["examples"]
    accuracy = report["student"]["metrics"]["validation"]["accuracy"]
    assert abs(accuracy - report["export"]["metric_fp32"]["accuracy"]) <= 100 / n + 1e-9
    assert len(report["teacher"]["pseudo_classifier_metrics"]["validation"]) == 6
    assert (out / "report.png").stat().st_size > 1000
    assert (out / "checkpoints" / "last").is_dir()
    assert "lr: 0.0001\n" in (out / "recipe.yaml").read_text()  # a transformer's default rate
    for name, digest in report["artifacts"].items():
        if name != "recipe.yaml":
            assert len(digest) == 64 and (out / name).is_file()
    student = AutoModelForSequenceClassification.from_pretrained(out / "student")
    tokenizer = AutoTokenizer.from_pretrained(out / "student")
    assert student.config.num_hidden_layers == 2
    assert student.config.id2label == {0: "entailment", 1: "not_entailment"}
    with safe_open(str(out / "student" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "pseudo" in k]
    enc = tokenizer("A man sleeps.", "Someone is asleep.", return_tensors="pt")
    assert student(**enc).logits.shape == (1, 2)
    assert not out.with_name("run.partial").exists()
    assert report["export"]["parity"]["max_abs_diff"] <= 1e-4 and (out / "onnx" / "model_int8.onnx").is_file()
    assert "parity" in result.stdout


def test_second_run_reuses_the_cached_teacher_and_recipe_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method:\n  name: ce\nstudent:\n  spec: teacher:1\n")
    result = ukd("distill", *SMALL, "--recipe", str(recipe), "--output", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fine-tuning" not in result.stderr + result.stdout
    saved = (tmp_path / "run" / "recipe.yaml").read_text()
    assert "name: ce" in saved and "spec: teacher:1" in saved and "name: rte" in saved


def test_cnn_student_from_the_teacher_tokenizer(tmp_path):
    result = ukd("distill", *SMALL, "--student", "cnn", "--student-hidden", "32",
                 "--output", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    import ukd_compress.students.small  # noqa: F401  registers the CNN with the Auto classes
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "student")
    assert type(model).__name__ == "CNNForSequenceClassification"
    assert "lr: 0.001\n" in (tmp_path / "run" / "recipe.yaml").read_text()  # from-scratch rate


def test_a_seed_makes_a_run_reproducible(tmp_path):
    def student_sha(name: str, seed: str) -> str:
        out = tmp_path / name
        result = ukd("distill", *SMALL, "--student", "cnn", "--student-hidden", "32", "--seed",
                     seed, "--max-steps", "2", "--output", str(out), "--quiet")
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((out / "report.json").read_text())["artifacts"]["student/model.safetensors"]

    assert student_sha("a", "3") == student_sha("b", "3") != student_sha("c", "4")


def test_kill_then_resume(tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    args = ["distill", "--task", "rte", "--max-train-samples", "64", "--max-eval-samples", "16",
            "--batch-size", "8", "--epochs", "10", "--checkpoint-every", "2", "--output", str(out),
            "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "ukd_compress", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    progress = partial / "checkpoints" / "last" / "progress.json"
    deadline = time.time() + 600
    while not progress.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and not out.exists()
    done = json.loads(progress.read_text())["step"]
    assert 0 < done < 80
    ignored = ukd("distill", "--resume", str(partial), "--epochs", "3", "--output", str(out))
    assert ignored.returncode == 2 and "takes no --epochs, --output" in ignored.stderr
    result = ukd("distill", "--resume", str(partial), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["history"][-1]["step"] == 80
    assert not partial.exists()


@pytest.mark.parametrize("args, message", [
    (["--task", "imdb"], "unknown task 'imdb'"),
    (["--teacher", "/nonexistent/teacher"], "could not load '/nonexistent/teacher'"),
    (["--student", "teacher:9"], "1 to 6 layers"),
    (["--task", "mnli"], "tasks that work offline here: sst2, rte"),
    (["--method", "magic"], "Invalid value for '--method'"),
    (["--method", "kd", "--delta", "5"], "delta weighs the hidden-state term"),
])
def test_bad_input_is_one_clear_line_and_no_run_folder(tmp_path, args, message):
    out = tmp_path / "run"
    result = ukd("distill", *SMALL, *args, "--output", str(out))
    assert_clean_failure(result, message, out)


def test_too_deep_student_fails_before_any_teacher_is_fine_tuned(tmp_path):
    env = {**os.environ, "UKD_HOME": str(tmp_path / "empty_cache")}
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "ukd_compress", "distill", *SMALL, "--student",
                             "teacher:7", "--output", str(out)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert_clean_failure(result, "1 to 6 layers", out)
    assert "fine-tuning" not in result.stderr and not (tmp_path / "empty_cache" / "teachers").exists()


def test_non_classifier_teacher(tmp_path):
    folder = tmp_path / "bare"
    tiny("bert").bert.save_pretrained(folder)
    out = tmp_path / "run"
    result = ukd("distill", *SMALL, "--teacher", str(folder), "--output", str(out))
    assert_clean_failure(result, "not a fine-tuned sequence classifier", out)


def test_malformed_and_empty_files(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("text,label\ngreat,1\nawful,0\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    broken = tmp_path / "broken.csv"
    broken.write_text('text,label\n"unclosed,1\nx,y,z,w\n')
    out = tmp_path / "run"
    for train, message in ((empty, "is empty"), (broken, "")):
        result = ukd("distill", "--train-file", str(train), "--eval-file", str(good),
                     "--text-column", "text", "--max-train-samples", "8", "--output", str(out))
        assert_clean_failure(result, message or "error:", out)


def test_existing_output_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = ukd("distill", *SMALL, "--output", str(out))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_tasks_and_help_teach():
    result = ukd("tasks")
    assert result.returncode == 0
    assert "sst2" in result.stdout and "yes" in result.stdout and "no (hub only)" in result.stdout
    help_text = ukd("distill", "--help").stdout
    for word in ("--teacher", "teacher:K", "bilstm", "--resume", "--recipe", "ukd+alp"):
        assert word in help_text


@pytest.mark.parametrize("args", [["--help"], ["tasks"], ["distill", "--help"], ["serve", "--help"]])
def test_help_and_tasks_import_no_torch(args):
    from ukd_compress.benchmarks.footprint import CLI_WITH_TORCH_CHECK  # says so on stderr, last

    result = subprocess.run([sys.executable, "-c", CLI_WITH_TORCH_CHECK, *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "False"


def test_every_method_is_offered_by_the_cli_and_the_job_api_and_nothing_else():
    from pydantic import ValidationError

    from ukd_compress.cli import distill
    from ukd_compress.methods import METHODS
    from ukd_compress.recipe import Recipe
    from ukd_compress.service.jobs import JobSpec

    choices = next(p for p in distill.params if p.name == "method").type.choices
    assert list(choices) == list(METHODS)
    for name in METHODS:
        assert JobSpec(method=name).method == name
        assert Recipe().replace("method", name=name).validate().method.name == name
    for wrong in ("ukd+", "UKD", "kd|ce", "tinybert"):
        with pytest.raises(ValidationError):
            JobSpec(method=wrong)
    assert [m for m in METHODS if METHODS[m].hidden] == ["pkd", "alp", "ukd+pkd", "ukd+alp"]


def test_teacher_command_fine_tunes_and_trains_pseudo_classifiers(tmp_path):
    out = tmp_path / "teacher"
    result = ukd("teacher", "--base", "minilm-l6", "--task", "rte", "--max-train-samples", "32",
                 "--max-eval-samples", "16", "--epochs", "1", "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pseudo classifiers by layer" in result.stdout
    teacher = AutoModelForSequenceClassification.from_pretrained(out)
    assert teacher.config.num_labels == 2 and teacher.config.num_hidden_layers == 6
    again = ukd("teacher", "--base", "minilm-l6", "--task", "rte", "--output", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_regression_run_on_real_stsb_reports_correlations_and_the_baseline(tmp_path):
    out = tmp_path / "run"
    result = ukd("distill", "--task", "stsb", "--max-train-samples", "64", "--max-eval-samples",
                 "48", "--batch-size", "16", "--epochs", "1", "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["student"]["metrics"]["validation"]) == {"pearson", "spearman"}
    assert report["baseline"] == {"name": "training mean",
                                  "metrics": {"validation": {"pearson": 0.0, "spearman": 0.0}}}
    assert "baseline (training mean)" in result.stdout
    student = AutoModelForSequenceClassification.from_pretrained(out / "student")
    assert student.config.num_labels == 1 and student.config.problem_type == "regression"


def test_a_run_on_files_is_named_after_them():
    from ukd_compress.pipeline import default_output
    from ukd_compress.recipe import Recipe

    recipe = Recipe().replace("task", train_file="data/reviews.csv", eval_file="data/dev.csv")
    assert default_output(recipe).name.startswith("reviews-teacher2-ukd-")
    assert default_output(Recipe()).name.startswith("sst2-teacher2-ukd-")


def test_unset_batch_sizes_and_learning_rates_are_filled_in_for_the_device():
    from ukd_compress.recipe import Recipe

    cpu = Recipe().for_device("cpu")
    assert (cpu.training.batch_size, cpu.training.lr) == (32, 1e-4)
    assert (cpu.teacher.finetune_batch_size, cpu.teacher.finetune_lr) == (32, 1e-4)
    gpu = Recipe().for_device("cuda")
    assert (gpu.training.batch_size, gpu.teacher.finetune_batch_size) == (256, 256)
    assert gpu.training.lr == gpu.teacher.finetune_lr == 2.83e-4  # 1e-4 x sqrt(256 / 32)
    assert Recipe().replace("student", spec="bilstm").for_device("cuda").training.lr == 2.83e-3
    assert Recipe().replace("training", batch_size=128).for_device("cpu").training.lr == 2e-4
    named = Recipe().replace("training", batch_size=64, lr=5e-5).for_device("cuda")
    assert (named.training.batch_size, named.training.lr) == (64, 5e-5)
    assert named.for_device("cpu") == named  # a recorded recipe stays as it was
