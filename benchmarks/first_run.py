"""first-run: the README's first command from an empty cache, this code beside a baseline revision.

    ukd-compress bench first-run --baseline c4cc04c

Each code runs the default job (`python -m ukd_compress distill`) in its own empty ``UKD_HOME``
and working folder, one after the other on this machine, with the same Python environment; the
baseline's code is a ``git worktree`` of the revision. Reported per code: wall seconds, peak
resident memory, and the teacher's and student's dev metrics from the run's report.json. Goals
(issue 11): at least 2x faster than the baseline, the student's metric not below the baseline's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .results import markdown_table, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOAL_SPEEDUP = 2.0
# Runs the command in a fresh process, so that its children's peak RSS is this run's alone.
PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(code)")


def default_run(source: Path, work: Path, env: dict[str, str]) -> dict:
    """The default job with the code in ``source``, from an empty cache under ``work``."""
    work.mkdir(parents=True)
    env = {**env, "PYTHONPATH": str(source), "UKD_HOME": str(work / "home")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "ukd_compress",
                           "distill", "--quiet"], cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the default run of {source} failed: {done.stderr[-2000:]}")
    report = json.loads(next((work / "runs").glob("*/report.json")).read_text())
    return {"wall_seconds": round(seconds, 1),
            "peak_rss_mib": round(int(done.stderr.strip().splitlines()[-1]) / 1024),
            "teacher": report["teacher"]["metrics"], "student": report["student"]["metrics"]}


def primary(metrics: dict) -> float:
    return round(next(iter(next(iter(metrics.values())).values())), 2)


def run(baseline: str = "c4cc04c") -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="ukd-first-run-") as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree),
                        baseline], check=True, capture_output=True)
        try:
            runs = {"this code": default_run(ROOT, Path(tmp) / "new", env),
                    f"baseline {baseline}": default_run(tree, Path(tmp) / "old", env)}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    new, old = runs["this code"], runs[f"baseline {baseline}"]
    speedup = round(old["wall_seconds"] / new["wall_seconds"], 2)
    kept = primary(new["student"]) >= primary(old["student"])
    data = {"baseline": baseline, "runs": runs, "speedup": speedup,
            "goal": f">= {GOAL_SPEEDUP}x faster, student not below the baseline's",
            "goal_met": speedup >= GOAL_SPEEDUP and kept}
    rows = [[name, r["wall_seconds"], r["peak_rss_mib"], primary(r["teacher"]), primary(r["student"])]
            for name, r in runs.items()]
    table = markdown_table(["code", "wall s", "peak MiB", "teacher", "student"], rows)
    markdown = (f"The README's first command from an empty cache, one run after the other\n\n"
                f"{table}\nspeedup {speedup}x (goal >= {GOAL_SPEEDUP}x; student kept: {kept})\n")
    fig, ax = plt.subplots(figsize=(5, 2.5))
    ax.barh(list(runs), [r["wall_seconds"] for r in runs.values()], color=["tab:green", "tab:gray"])
    ax.set_xlabel("wall seconds, empty cache")
    ax.set_title(f"default run: {speedup}x")
    fig.tight_layout()
    write_results(f"first-run-{'cuda' if torch.cuda.is_available() else 'cpu'}", data, markdown, fig)
    return data
