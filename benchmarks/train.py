"""train: step time and memory of each method against kd, and what the teacher cache saves.

All methods distil the same teacher into the same student on the same batches, in one process.
A step is forward, backward and optimizer step (the loop's work, without checkpoints).
Memory: the peak torch allocated, on CUDA only (on CPU the allocator keeps freed memory, so no
per-method peak can be read off the process; the table says n/a rather than guess).
Cache: the same batches with the teacher's outputs cached (every epoch after the first) and with
the teacher run every step (no cache). Goals: ukd within 1.10x of kd's step time; the cached
epoch at least 2x faster than the uncached one.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ukd_compress.data import batches  # noqa: E402
from ukd_compress.distill import Distiller, device_type  # noqa: E402
from ukd_compress.pipeline import prepare  # noqa: E402
from ukd_compress.methods import METHODS as ALL_METHODS  # noqa: E402
from ukd_compress.recipe import Recipe  # noqa: E402

from .results import markdown_table, write_results  # noqa: E402

METHODS = [m for m in ALL_METHODS if m != "ukd+pkd"]  # ukd+pkd costs what ukd and pkd do
GOAL_UKD_OVER_KD, GOAL_CACHE_SPEEDUP = 1.10, 2.0


def _distiller(recipe: Recipe, work: Path, cache: bool) -> Distiller:
    recipe = recipe.replace("training", cache_teacher=cache).validate().for_device(device_type())
    setup = prepare(recipe)
    return Distiller(recipe.training, recipe.method, setup.loop_data(), setup.student, work,
                     setup.accelerator, setup.teaching(), quiet=True)


def _step(d: Distiller, batch) -> None:
    terms = d.loss_terms(batch)
    d.accelerator.backward(terms["loss"])
    d.optimizer.step()
    d.optimizer.zero_grad()


def _timed_steps(d: Distiller, data: list, warmup: int = 2) -> tuple[list[float], float | None]:
    """Seconds per step over ``data`` (after ``warmup`` steps) and CUDA peak memory (MiB)."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for batch in data[:warmup]:
        _step(d, batch.to(d.device))
    seconds = []
    for batch in data[warmup:]:
        batch = batch.to(d.device)
        start = time.perf_counter()
        _step(d, batch)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds, torch.cuda.max_memory_allocated() / 2**20 if cuda else None


def run(task: str = "sst2", steps: int = 20, batch_size: int = 32,
        max_train_samples: int = 1000) -> dict:
    base = Recipe().replace("task", name=task, max_train_samples=max_train_samples)
    base = base.replace("training", batch_size=batch_size)
    work = Path(tempfile.mkdtemp(prefix="ukd-bench-train-"))
    rows = {}
    for method in METHODS:
        d = _distiller(base.replace("method", name=method), work / method, cache=False)
        data = list(batches(d.train_split, d.collate, batch_size))[: steps + 2]
        seconds, memory = _timed_steps(d, data)
        rows[method] = {"step_ms": round(1000 * statistics.median(seconds), 1),
                        "memory_mib": memory and round(memory, 1)}
    kd = rows["kd"]["step_ms"]
    for row in rows.values():
        row["vs_kd"] = round(row["step_ms"] / kd, 2)

    d = _distiller(base.replace("method", name="ukd"), work / "cache", cache=True)
    data = list(batches(d.train_split, d.collate, batch_size))[: steps + 2]
    first, _ = _timed_steps(d, data, warmup=0)        # fills the cache: the first epoch
    cached, _ = _timed_steps(d, data, warmup=0)       # every later epoch
    d.cache = None
    uncached, _ = _timed_steps(d, data, warmup=0)
    cache = {"first_epoch_s": round(sum(first), 2), "cached_epoch_s": round(sum(cached), 2),
             "uncached_epoch_s": round(sum(uncached), 2)}
    cache["speedup"] = round(cache["uncached_epoch_s"] / cache["cached_epoch_s"], 2)
    data_out = {"task": task, "student": base.student.spec, "teacher": base.teacher.name,
                "steps": steps, "batch_size": batch_size,
                "device": "cuda" if torch.cuda.is_available() else "cpu",
                "methods": rows, "cache": cache,
                "goals": {"ukd_vs_kd": f"<= {GOAL_UKD_OVER_KD}",
                          "cache_speedup": f">= {GOAL_CACHE_SPEEDUP}x"},
                "goals_met": {"ukd_vs_kd": rows["ukd"]["vs_kd"] <= GOAL_UKD_OVER_KD,
                              "cache_speedup": cache["speedup"] >= GOAL_CACHE_SPEEDUP}}
    met = data_out["goals_met"]
    markdown = (f"Training cost, {task}, {base.teacher.name} -> {base.student.spec}, batch "
                f"{batch_size}, median of {steps} steps, {data_out['device']}, teacher not cached\n\n"
                + markdown_table(["method", "step ms", "x kd", "memory MiB"],
                                 [[m, r["step_ms"], r["vs_kd"], r["memory_mib"] or "n/a on CPU"]
                                  for m, r in rows.items()])
                + f"\nukd / kd {rows['ukd']['vs_kd']}x (goal <= {GOAL_UKD_OVER_KD}: "
                + ("met" if met["ukd_vs_kd"] else "**missed**") + ")\n\n"
                + markdown_table(["ukd, same batches", "seconds"],
                                 [["first epoch (fills the cache)", cache["first_epoch_s"]],
                                  ["later epoch, cached", cache["cached_epoch_s"]],
                                  ["later epoch, no cache", cache["uncached_epoch_s"]]])
                + f"\ncache speedup {cache['speedup']}x (goal >= {GOAL_CACHE_SPEEDUP}x: "
                + ("met" if met["cache_speedup"] else "**missed**") + ")\n")
    write_results("train", data_out, markdown, _figure(rows, cache))
    return data_out


def _figure(rows: dict, cache: dict) -> plt.Figure:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.bar(list(rows), [r["step_ms"] for r in rows.values()], color="tab:blue")
    left.set_ylabel("ms per step")
    left.set_title("step time by method")
    names = ["first", "cached", "no cache"]
    right.bar(names, [cache["first_epoch_s"], cache["cached_epoch_s"], cache["uncached_epoch_s"]],
              color=["tab:gray", "tab:green", "tab:red"])
    right.set_ylabel("seconds")
    right.set_title("ukd epoch over the same batches")
    return fig
