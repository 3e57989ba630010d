"""vocab: students with their own, smaller vocabularies beside one on the teacher's.

teacher:2 students under ukd on SST-2 at the CPU default budget (8,000 examples, 6 epochs), paired
over seeds 0..N-1: they are the quality study's runs, so seed s gives every vocabulary the same
sample, order and initialisation of the layers. Each size is made both ways: trimmed (the
teacher's most used tokens) and trained (a new WordPiece). Per vocabulary: parameters, embedding
parameters, dev accuracy (mean, std, paired difference to the teacher's vocabulary); and, for
seed 0's student exported with int8, the ONNX file sizes, tokens per dev text and batch-1 latency
as the service meets it (tokenise one dev sentence, run ONNX Runtime), all timed in one run.
Where a smaller vocabulary loses: the dev texts it spells differently from the teacher's
vocabulary (a word cut into other pieces), and each student's accuracy on those and on the rest,
beside the teacher-vocabulary student's on the same texts (mean over seeds).
Goals: the 8,000-token student has <= 7.1M parameters, its accuracy is within 1.0 point of the
teacher-vocabulary student's, and its fp32 and int8 files are each <= 50% of that student's.
"""

from __future__ import annotations

import copy
import itertools
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from ukd_compress.export.latency import timed  # noqa: E402
from ukd_compress.export.runtime import ort_logits, ort_session  # noqa: E402
from ukd_compress.export.run import export_run  # noqa: E402
from ukd_compress.tasks import find_data_dir, get_task, load_glue  # noqa: E402
from ukd_compress.vocab import use_vocabulary  # noqa: E402

from .quality import Run, parse_student, run_study  # noqa: E402
from .results import RESULTS, markdown_table, write_results  # noqa: E402

VOCABS = (12000, 8000, 4000)
VOCAB_METHODS = ("trim", "train")
ROW = {"task": "sst2", "train_examples": 8000, "epochs": 6}
GOALS = {"max_params": 7.1e6, "max_accuracy_drop": 1.0, "max_file_share": 0.5}


def student_token(vocab: int | None = None, method: str | None = None) -> str:
    """The study's student: teacher:2, on the teacher's vocabulary or one of its own."""
    return "teacher:2" if not vocab else f"teacher:2[vocab_size={vocab},vocab_method={method}]"


def batch1_ms(onnx_file: Path, texts: list[str], max_length: int) -> tuple[float, float]:
    """p50 ms of tokenising one text and running it, cycling through ``texts``; tokens per text."""
    session = ort_session(onnx_file)
    tokenizer = AutoTokenizer.from_pretrained(onnx_file.parent)
    cycle = itertools.cycle(texts)
    one = lambda: ort_logits(session, dict(tokenizer(  # noqa: E731
        next(cycle), truncation=True, max_length=max_length, return_tensors="np")))
    tokens = statistics.mean(len(ids) for ids in tokenizer(texts, truncation=True,
                                                            max_length=max_length)["input_ids"])
    return timed(one, warmup=len(texts), repeats=len(texts), batch=1)["p50_ms"], tokens


def run_folder(workdir: Path, student: str, seed: int) -> Path:
    """The study's run of ``student`` under ukd at ``seed``."""
    return workdir / Run(ROW["task"], ROW["train_examples"], ROW["epochs"], student, "ukd", "",
                         seed).name


def predicted_labels(model, tokenizer, texts: list[str], **tokenize) -> torch.Tensor:
    """``model``'s label for each text, 64 texts per forward pass."""
    with torch.inference_mode():
        return torch.cat([model(**tokenizer(texts[i:i + 64], padding=True, return_tensors="pt",
                                            **tokenize)).logits.argmax(-1)
                          for i in range(0, len(texts), 64)])


def teacher_on(vocabulary: Path, teacher, teacher_tokenizer, texts: list[str],
               labels: list[int]) -> float:
    """Dev accuracy of the whole teacher reading ``vocabulary``'s tokens, embeddings by
    vocabulary transfer and no training: how much of the teacher a vocabulary keeps."""
    tokenizer = AutoTokenizer.from_pretrained(vocabulary)
    model = teacher
    if len(tokenizer) != len(teacher_tokenizer):
        model = copy.deepcopy(teacher)
        use_vocabulary(model, teacher.get_input_embeddings().weight, teacher_tokenizer, tokenizer)
    predictions = predicted_labels(model, tokenizer, texts)
    return round(100 * float((predictions == torch.tensor(labels)).float().mean()), 2)


def dev_predictions(folder: Path, texts: list[str]) -> np.ndarray:
    """The stripped student's dev labels, as Transformers loads it."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    return predicted_labels(model, AutoTokenizer.from_pretrained(folder), texts, truncation=True,
                            max_length=128).numpy()


def respelt(student_tokenizer, teacher_tokenizer, texts: list[str]) -> np.ndarray:
    """Per text, whether the student's vocabulary cuts it into other pieces than the teacher's."""
    return np.array([student_tokenizer.tokenize(t) != teacher_tokenizer.tokenize(t) for t in texts])


def split_accuracy(correct: list[np.ndarray], base: list[np.ndarray], mask: np.ndarray) -> dict:
    """Accuracy (mean over seeds) on the texts in ``mask`` and on the rest, of a student and of
    the teacher-vocabulary one: ``correct`` and ``base`` hold a bool per text for each seed."""
    mean = lambda runs, rows: round(100 * float(np.mean([c[rows].mean() for c in runs])), 2)  # noqa: E731
    if not mask.any() or mask.all():
        return {"respelt_share": round(float(mask.mean()), 3)}
    return {"respelt_share": round(float(mask.mean()), 3),
            "on_respelt": mean(correct, mask), "base_on_respelt": mean(base, mask),
            "on_rest": mean(correct, ~mask), "base_on_rest": mean(base, ~mask)}


def run(jobs: int = 1, workdir: Path = Path("runs/vocab-study"), seeds: int = 3,
        data_dir: str | None = None, vocabs: tuple[int, ...] = VOCABS,
        methods: tuple[str, ...] = VOCAB_METHODS, results_dir: Path = RESULTS) -> dict:
    students = [student_token()] + [student_token(v, m) for m in methods for v in vocabs]
    study = {"seeds": seeds, "rows": [{**ROW, "students": students, "methods": ["ukd"]}]}
    quality = run_study(study, workdir, jobs, "vocab-study", data_dir=data_dir,
                        results_dir=results_dir)
    scores = {s: {r["seed"]: r["metric"] for r in quality["rows"] if r["student"] == s}
              for s in students}
    dev_split = load_glue(get_task("sst2"), find_data_dir(data_dir))["validation"]
    dev_texts, dev_labels = list(dev_split["text_a"]), list(dev_split["label"])
    dev = dev_texts[:200]
    base = scores[students[0]]
    folders = {student: run_folder(workdir, student, 0) for student in students}
    # the study fixes one teacher per task and budget: load it once
    teacher_dir = json.loads((folders[students[0]] / "report.json").read_text())["teacher"]["name"]
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    labels = np.array(dev_labels)
    correct = {student: [dev_predictions(run_folder(workdir, student, seed) / "student",
                                         dev_texts) == labels
                         for seed in sorted(scores[student])] for student in students}
    rows = []
    for student, folder in folders.items():
        if not (folder / "onnx" / "model_int8.onnx").is_file():
            export_run(folder, int8=True, batches=[1], seq_lens=[128], repeats=5)
        report = json.loads((folder / "report.json").read_text())
        fp32_ms, tokens = batch1_ms(folder / "onnx" / "model.onnx", dev, 128)
        int8_ms, _ = batch1_ms(folder / "onnx" / "model_int8.onnx", dev, 128)
        by_seed = scores[student]
        paired = [by_seed[s] - base[s] for s in by_seed if s in base]
        vocabulary = report["student"]["vocabulary"]
        rows.append({
            "student": student, "vocab": vocabulary["size"],
            "made": student_method(student), "transfer": vocabulary.get("transfer"),
            "params": report["student"]["params"],
            "embedding_params": report["student"]["embedding_params"], "scores": by_seed,
            "mean": round(statistics.mean(by_seed.values()), 2),
            "std": round(statistics.stdev(by_seed.values()), 2) if len(by_seed) > 1 else 0.0,
            "paired_mean": round(statistics.mean(paired), 2),
            "paired_std": round(statistics.stdev(paired), 2) if len(paired) > 1 else 0.0,
            "onnx_fp32_bytes": report["export"]["onnx_bytes"]["fp32"],
            "onnx_int8_bytes": report["export"]["onnx_bytes"]["int8"],
            "tokens_per_text": round(tokens, 2), "batch1_p50_ms_fp32": round(fp32_ms, 3),
            "batch1_p50_ms_int8": round(int8_ms, 3),
            "teacher_untrained_on_it": teacher_on(folder / "student", teacher, teacher_tokenizer,
                                                  dev_texts, dev_labels),
            **split_accuracy(correct[student], correct[students[0]],
                             respelt(AutoTokenizer.from_pretrained(folder / "student"),
                                     teacher_tokenizer, dev_texts)),
            "teacher_params": report["teacher"]["params"],
            "teacher_metric": report["teacher"]["metrics"]["validation"]["accuracy"]})
    data = {"study": study, "rows": rows, "goals": goals(rows)}
    write_results("vocab", data, markdown(data), figure(rows), results_dir)
    return data


def student_method(student: str) -> str:
    """How the study's student got its vocabulary: trim, train, or the teacher's."""
    return parse_student(student)[1].get("vocab_method", "the teacher's")


def goals(rows: list[dict]) -> dict:
    """The issue's goals for the 8,000-token student against the teacher-vocabulary one."""
    base = rows[0]
    chosen = next((r for r in rows if r["vocab"] == 8000 and r["made"] == "trim"), None)
    if chosen is None:
        return {}
    return {
        "params_at_most_7.1M": chosen["params"] <= GOALS["max_params"],
        "accuracy_within_1_point": chosen["paired_mean"] >= -GOALS["max_accuracy_drop"],
        "fp32_file_at_most_half": chosen["onnx_fp32_bytes"] <= GOALS["max_file_share"] * base["onnx_fp32_bytes"],
        "int8_file_at_most_half": chosen["onnx_int8_bytes"] <= GOALS["max_file_share"] * base["onnx_int8_bytes"]}


def markdown(data: dict) -> str:
    rows, base = data["rows"], data["rows"][0]
    table = [[f"{r['vocab']:,}", r["made"], f"{r['params'] / 1e6:.2f}M", f"{r['embedding_params'] / 1e6:.2f}M",
              f"{r['onnx_fp32_bytes'] / 1e6:.1f} MB ({100 * r['onnx_fp32_bytes'] / base['onnx_fp32_bytes']:.0f}%)",
              f"{r['onnx_int8_bytes'] / 1e6:.1f} MB ({100 * r['onnx_int8_bytes'] / base['onnx_int8_bytes']:.0f}%)",
              f"{r['mean']:.2f} ± {r['std']:.2f}",
              "" if r is base else f"{r['paired_mean']:+.2f} ± {r['paired_std']:.2f}",
              " ".join(f"{v:.2f}" for v in r["scores"].values()),
              f"{r['teacher_untrained_on_it']:.2f}", r["tokens_per_text"],
              f"{r['batch1_p50_ms_fp32']:.2f} / {r['batch1_p50_ms_int8']:.2f}",
              _split(r)] for r in rows]
    met = ", ".join(f"{k} {'met' if v else '**missed**'}" for k, v in data["goals"].items())
    return ("SST-2 dev accuracy of teacher:2 students under ukd (8,000 training examples, 6 epochs, "
            f"seeds 0-{len(base['scores']) - 1} paired); teacher {base['teacher_metric']:.2f}, "
            f"{base['teacher_params'] / 1e6:.1f}M parameters. Files, tokens and latency: seed 0's "
            "student; latency is one dev sentence tokenised and run on ONNX Runtime, p50. "
            "'Teacher on it, untrained': the whole teacher reading that vocabulary, embeddings by "
            "vocabulary transfer, no training.\n\n"
            + markdown_table(["vocabulary", "made by", "parameters", "embeddings", "ONNX fp32", "ONNX int8",
                              "accuracy", "- teacher vocab, paired", "per seed",
                              "teacher on it, untrained", "tokens per text", "batch-1 ms fp32 / int8",
                              "re-spelt dev texts: share; accuracy on them, on the rest "
                              "(teacher vocab's)"], table)
            + f"\nGoals (8,000 tokens, trimmed: the default): {met}\n")


def _split(row: dict) -> str:
    if "on_respelt" not in row:
        return ""
    return (f"{100 * row['respelt_share']:.0f}%; {row['on_respelt']:.2f} ({row['base_on_respelt']:.2f}), "
            f"{row['on_rest']:.2f} ({row['base_on_rest']:.2f})")


def figure(rows: list[dict]) -> plt.Figure:
    """Accuracy (a dot per seed) and file sizes, per vocabulary."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    names = [f"{r['vocab']:,}\n{r['made']}" for r in rows]
    for x, r in enumerate(rows):
        left.bar(x, r["mean"], color="tab:blue", alpha=0.5)
        left.plot([x] * len(r["scores"]), list(r["scores"].values()), "k.")
    low = min(min(r["scores"].values()) for r in rows)
    left.set_ylim(low - 2, max(max(r["scores"].values()) for r in rows) + 1)
    left.set_xticks(range(len(rows)), names)
    left.set_xlabel("student vocabulary (tokens)")
    left.set_ylabel("SST-2 dev accuracy")
    x = np.arange(len(rows))
    right.bar(x - 0.2, [r["onnx_fp32_bytes"] / 1e6 for r in rows], 0.4, label="ONNX fp32")
    right.bar(x + 0.2, [r["onnx_int8_bytes"] / 1e6 for r in rows], 0.4, label="ONNX int8")
    right.set_xticks(x, names)
    right.set_xlabel("student vocabulary (tokens)")
    right.set_ylabel("file size (MB)")
    right.legend()
    return fig
