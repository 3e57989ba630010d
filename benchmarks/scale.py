"""scale: the headline command's shapes, timed on this machine (random weights, real RTE pairs).

`distill --teacher roberta-large --student distilroberta --task mnli` cannot download its
weights here, but its speed does not depend on them: models built from the same configurations
cost the same. Each pair (roberta-large -> distilroberta, bert-base -> teacher:4) is timed in
the loop's phases, with the loop's own code (``Distiller.loss_terms``, fused AdamW, bf16 autocast
where the device has it):

  teacher_finetune   a training step of the teacher (fine-tuning a base into a teacher)
  cache_fill         the frozen teacher's forward with its pseudo classifiers (stage 1, cache)
  student_kd         a student step under kd, the teacher's logits cached
  student_ukd        the same under ukd

FLOPs count an encoder's matrix products (benchmarks.infer.encoder_flops) at each batch's padded
length; a training step is 3x its forward. MFU is against the device's peak: the bf16 dense
figure of a known GPU, else this machine's measured matmul rate (the table says which).
The projection adds up the headline command at its defaults (393,702 MNLI pairs and batch 256 on
CUDA, 8,000 pairs and batch 32 on CPU; teacher 3 epochs, stage 1 on 10,000 examples, student 6
epochs with the cache) at the measured rates. RTE pairs are longer than MNLI's, so the
projection is an upper bound.
Results: benchmarks/results/scale-<device>.json, .md, .png.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformers import (AutoConfig, AutoModelForSequenceClassification,  # noqa: E402
                          PreTrainedTokenizerBase)

from ukd_compress.data import Collator, batches, epoch_order, text_lengths  # noqa: E402
from ukd_compress.distill import (Distiller, LoopData, Teaching, device_type,  # noqa: E402
                                  native_bf16)
from ukd_compress.heads import PseudoClassifiers, WithPseudoClassifiers, backbone_widths  # noqa: E402
from ukd_compress.layer_plan import layer_plan  # noqa: E402
from ukd_compress.models import attention, load_tokenizer  # noqa: E402
from ukd_compress.pipeline import wrap_student  # noqa: E402
from ukd_compress.recipe import DEFAULT_BATCH, Recipe  # noqa: E402
from ukd_compress.students import Student, build_student  # noqa: E402
from ukd_compress.tasks import find_data_dir, get_task, load_glue, subsample  # noqa: E402

from .infer import encoder_flops  # noqa: E402
from .results import markdown_table, write_results  # noqa: E402

# The configurations of the hub checkpoints (read from their config.json files), so that no
# download is needed: speed depends on shapes, not on weights.
CONFIGS = {
    "roberta-large": dict(model_type="roberta", hidden_size=1024, num_hidden_layers=24,
                          num_attention_heads=16, intermediate_size=4096, vocab_size=50265,
                          max_position_embeddings=514, type_vocab_size=1, pad_token_id=1),
    "distilroberta": dict(model_type="roberta", hidden_size=768, num_hidden_layers=6,
                          num_attention_heads=12, intermediate_size=3072, vocab_size=50265,
                          max_position_embeddings=514, type_vocab_size=1, pad_token_id=1),
    "bert-base": dict(model_type="bert", hidden_size=768, num_hidden_layers=12,
                      num_attention_heads=12, intermediate_size=3072, vocab_size=30522),
}
PAIRS = {"roberta-large -> distilroberta": ("roberta-large", "distilroberta"),
         "bert-base -> teacher:4": ("bert-base", "teacher:4")}
GPU_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
MNLI_TRAIN, MNLI_DEV, CPU_DEFAULT_TRAIN = 393_702, 19_647, 8_000
GOAL_HEADLINE_MINUTES = 30


def build(name: str, num_labels: int = 3):
    config = AutoConfig.for_model(**CONFIGS[name], num_labels=num_labels)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config, **attention())


def device_peak(device: torch.device) -> tuple[float, str]:
    """FLOP/s to compute MFU against, and where the figure comes from."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_BF16_PEAK.items():
            if key in name:
                return peak, f"{name} bf16 dense peak (spec sheet)"
    a = torch.randn(2048, 2048, device=device)
    dtype = torch.bfloat16 if native_bf16() else torch.float32
    a = a.to(dtype)
    for _ in range(3):
        a @ a
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * 2048 ** 3 * 10 / (time.perf_counter() - start), f"measured {dtype} matmul here"


def rte_batches(tokenizer: PreTrainedTokenizerBase, batch_size: int, steps: int,
                config) -> list:
    """Length-grouped batches of real RTE pairs, as the loop makes them, fitted to ``config``:
    ids within its vocabulary, no segment ids where it has one segment type (RoBERTa)."""
    train = subsample(load_glue(get_task("rte"), find_data_dir())["train"], None, 0)
    collate = Collator(tokenizer, tokenizer, 128)
    train = collate.tokenized(train)
    order = epoch_order(len(train), 0, 0, text_lengths(train), batch_size)
    every = list(batches(train, collate, batch_size, order))
    chosen = [every[round(i * (len(every) - 1) / (steps - 1))] for i in range(steps)]
    for batch in chosen:  # spread over the epoch: its lengths, not only the longest batches
        batch.student_inputs["input_ids"] = batch.student_inputs["input_ids"] % config.vocab_size
        if config.type_vocab_size < 2:
            batch.student_inputs.pop("token_type_ids", None)
        batch.labels = batch.labels % 3
    return chosen


def timed(step, data: list, device: torch.device) -> tuple[float, float]:
    """Median seconds per step over ``data``, after one untimed pass over the same batches (each
    batch length is a new shape: its first step pays for kernel selection, not for the work),
    and peak memory (MiB: CUDA's allocator peak, or on CPU the process's peak resident size)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    data = [batch.to(device) for batch in data]
    for batch in data:
        step(batch)
    seconds = []
    for batch in data:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return statistics.median(seconds), peak


def phase(seconds: float, flops: float, batch: int, peak_mib: float, peak_flops: float) -> dict:
    tflops = flops / seconds / 1e12
    return {"examples_per_s": round(batch / seconds, 1), "step_ms": round(1000 * seconds, 2),
            "tflops": round(tflops, 3), "mfu": round(1e12 * tflops / peak_flops, 4),
            "peak_mib": round(peak_mib, 1)}


def measure_pair(teacher_name: str, student_spec: str, tokenizer, batch_size: int, steps: int,
                 device: torch.device, peak_flops: float) -> dict:
    teacher = build(teacher_name)
    data = rte_batches(tokenizer, batch_size, steps, teacher.config)
    padded = statistics.mean(b.student_inputs["input_ids"].shape[1] for b in data)
    real = statistics.mean(float(b.student_inputs["attention_mask"].sum(1).float().mean())
                           for b in data)
    recipe = Recipe().replace("method", name="ce").replace("training", batch_size=batch_size,
                                                           lr=1e-5)
    work = Path(tempfile.mkdtemp(prefix="ukd-bench-scale-"))

    def fwd_flops(config) -> float:
        return encoder_flops(config, batch_size, round(padded))

    teacher_run = Distiller(recipe.training, recipe.method,
                            LoopData(get_task("mnli"), data_split(len(data)), {},
                                     Collator(tokenizer, None, 128)),
                            WithPseudoClassifiers(teacher), work)
    phases = {}
    s, mem = timed(lambda b: _train_step(teacher_run, b), data, device)
    phases["teacher_finetune"] = phase(s, 3 * fwd_flops(teacher.config), batch_size, mem, peak_flops)
    teacher = teacher_run.accelerator.unwrap_model(teacher_run.student).backbone
    del teacher_run
    heads = PseudoClassifiers(backbone_widths(teacher), 3, "linear")
    frozen = WithPseudoClassifiers(teacher, heads).to(device).eval()

    def fill(batch):
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=native_bf16()):
            frozen(**batch.teacher_inputs)
    s, mem = timed(fill, data, device)
    phases["cache_fill"] = phase(s, fwd_flops(teacher.config), batch_size, mem, peak_flops)

    if student_spec.startswith("teacher:"):
        student = build_student(student_spec, teacher, tokenizer, ("a", "b", "c")).model
    else:
        student = build(student_spec)
    for method in ("kd", "ukd"):
        r = recipe.replace("method", name=method)
        wrapped = wrap_student(r, Student(student, tokenizer), heads, teacher.config.hidden_size)
        plan = layer_plan(r.method, len(backbone_widths(student)), len(heads.heads))
        cache_size = 1 + max(int(b.idx.max()) for b in data)
        d = Distiller(r.training, r.method, LoopData(get_task("mnli"), data_split(cache_size), {},
                                                    Collator(tokenizer, None, 128)),
                      wrapped, work, teaching=Teaching(frozen, plan=plan),
                      quiet=True)
        for batch in data:  # the cache is full after the first epoch: time the later ones
            d.teacher_outputs(batch.to(device))
        s, mem = timed(lambda b: _train_step(d, b), data, device)
        phases[f"student_{method}"] = phase(s, 3 * fwd_flops(student.config), batch_size, mem,
                                            peak_flops)
        del d
    return {"teacher": teacher_name, "student": student_spec, "batch_size": batch_size,
            "padded_tokens": round(padded, 1), "real_tokens": round(real, 1), "phases": phases}


def data_split(size: int):
    """A stand-in training split of ``size`` examples (the loop sizes its cache from it)."""
    import datasets

    return datasets.Dataset.from_dict({"idx": list(range(size)), "text_a": ["x"] * size,
                                       "text_b": ["y"] * size, "label": [0] * size})


def _train_step(d: Distiller, batch) -> None:
    terms = d.loss_terms(batch)
    d.accelerator.backward(terms["loss"])
    d.optimizer.step()
    d.optimizer.zero_grad()


def projected_minutes(phases: dict, train: int, head_samples: int = 10_000, dev: int = MNLI_DEV,
                      teacher_epochs: int = 3, student_epochs: int = 6) -> float:
    """The headline command's wall time at these rates: fine-tune, stage 1, 6 student epochs."""
    rate = {k: v["examples_per_s"] for k, v in phases.items()}
    seconds = (teacher_epochs * train / rate["teacher_finetune"]
               + (head_samples + dev) / rate["cache_fill"]
               + train / rate["cache_fill"] + student_epochs * train / rate["student_ukd"])
    return round(seconds / 60, 1)


def run(batch_size: int | None = None, steps: int = 12) -> dict:
    """Time both pairs at ``batch_size`` (default: the loop's own for this device)."""
    device = torch.device(device_type())
    batch_size = batch_size or DEFAULT_BATCH[device.type]
    peak_flops, peak_source = device_peak(device)
    tokenizer = load_tokenizer("minilm-l6")  # WordPiece ids stand in for each model's own
    pairs = {label: measure_pair(t, s, tokenizer, batch_size, steps, device, peak_flops)
             for label, (t, s) in PAIRS.items()}
    headline = pairs["roberta-large -> distilroberta"]
    train = MNLI_TRAIN if device.type == "cuda" else CPU_DEFAULT_TRAIN
    minutes = projected_minutes(headline["phases"], train)
    data = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "peak_tflops": round(peak_flops / 1e12, 2), "peak_source": peak_source,
            "pairs": pairs, "phases": headline["phases"], "projected_headline_minutes": minutes,
            "projected_train_examples": train,
            "goal": f"<= {GOAL_HEADLINE_MINUTES} min on one H100/H200",
            "goal_met": device.type == "cuda" and minutes <= GOAL_HEADLINE_MINUTES}
    write(data)
    return data


def write(data: dict) -> None:
    """benchmarks/results/scale-<device>.json, .md and .png from a run's data (also re-renders a
    run's JSON)."""
    pairs, headline = data["pairs"], data["pairs"]["roberta-large -> distilroberta"]
    rows = [[label, ph, v["examples_per_s"], v["step_ms"], v["tflops"], f"{100 * v['mfu']:.1f}%",
             v["peak_mib"]] for label, p in pairs.items() for ph, v in p["phases"].items()]
    markdown = (f"Scale, {data['device']}, batch {headline['batch_size']}, real RTE pairs "
                f"({headline['real_tokens']} tokens, padded to {headline['padded_tokens']}); "
                f"MFU against {data['peak_tflops']} TFLOP/s ({data['peak_source']})\n\n"
                + markdown_table(["pair", "phase", "examples/s", "step ms", "TFLOP/s", "MFU",
                                  "peak MiB"], rows)
                + f"\nprojected headline command ({data['projected_train_examples']:,} training "
                  f"examples): {data['projected_headline_minutes']} min\n")
    name = "scale-cpu" if data["device"] == "cpu" else "scale-cuda"
    write_results(name, data, markdown, _figure(pairs))


def _figure(pairs: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    labels, values = [], []
    for label, p in pairs.items():
        for ph, v in p["phases"].items():
            labels.append(f"{label}: {ph}")
            values.append(v["examples_per_s"])
    ax.barh(labels, values, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("examples/s")
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig
