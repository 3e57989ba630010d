"""footprint: what the command line and the server cost to start, this code beside a baseline.

    ukd-compress bench footprint RUN_DIR --baseline d56821a

Each code (this tree, and a ``git worktree`` of the baseline revision) runs in the same Python
environment, one after the other, through the command line alone, so the two layouts need not
share module names. Reported per code:

- ``ukd-compress --help`` and ``ukd-compress tasks``: wall seconds (median of 3 fresh processes)
  and whether the process imported torch;
- ``ukd-compress serve RUN_DIR``: seconds from start to /readyz 200, resident memory of the
  server's processes after one /predict, and whether any of them mapped libtorch;
- ``ukd-compress bento RUN_DIR --build``: the size of the Bento it builds.

Goals (issue 12): no torch in the command line's --help and tasks, nor in the server.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import matplotlib
import psutil

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ukd_compress.service.launch import server_process  # noqa: E402
from .results import markdown_table, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Runs the command line in this process and says on stderr whether it imported torch.
CLI_WITH_TORCH_CHECK = ("import atexit, runpy, sys; "
                        "atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); "
                        "sys.argv = ['ukd-compress', *sys.argv[1:]]; "
                        "runpy.run_module('ukd_compress', run_name='__main__')")


def cli(env: dict[str, str], *args: str) -> dict:
    """Median wall seconds of ``ukd-compress ARGS`` over 3 fresh processes; torch imported?"""
    seconds, torch = [], None
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CLI_WITH_TORCH_CHECK, *args], env=env,
                              capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"ukd-compress {' '.join(args)} failed: {done.stderr[-2000:]}")
        torch = done.stderr.strip().splitlines()[-1] == "True"
    return {"seconds": round(statistics.median(seconds), 2), "imports_torch": torch}


def server(env: dict[str, str], run_dir: Path) -> dict:
    """Start to ready, resident memory after one request, and libtorch in any server process."""
    start = time.perf_counter()
    with server_process(str(run_dir), env=env) as (process, url):
        ready = time.perf_counter() - start
        httpx.post(f"{url}/predict", json={"texts": ["a gorgeous, witty film"]},
                   timeout=60).raise_for_status()
        members = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        rss = [m.memory_info().rss for m in members]
        torch = any("libtorch" in m.path for p in members for m in p.memory_maps(grouped=True))
    return {"ready_seconds": round(ready, 1), "rss_mib": round(sum(rss) / 2**20),
            "largest_process_rss_mib": round(max(rss) / 2**20), "processes": len(members),
            "maps_libtorch": torch}


def bento_size(env: dict[str, str], run_dir: Path, source: Path) -> dict:
    """Built from the source folder: `bentoml build` reads no file outside its working folder."""
    home = Path(env["BENTOML_HOME"])
    done = subprocess.run([sys.executable, "-m", "ukd_compress", "bento", str(run_dir), "--build"],
                          env=env, capture_output=True, text=True, cwd=source)
    if done.returncode != 0:
        raise RuntimeError(f"ukd-compress bento --build failed: {done.stderr[-2000:]}")
    bento = next((home / "bentos" / "ukd-compress").glob("*/bento.yaml")).parent
    files = [p for p in bento.rglob("*") if p.is_file()]
    model = [p for p in files if "models" in p.relative_to(bento).parts]
    return {"bento_mib": round(sum(p.stat().st_size for p in files) / 2**20, 1),
            "model_mib": round(sum(p.stat().st_size for p in model) / 2**20, 1),
            "source_files": sum(p.suffix == ".py" for p in files)}


def measure(source: Path, run_dir: Path, work: Path) -> dict:
    """Every figure of the code in ``source``; run from ``work``, since a process started with
    ``-c`` or ``-m`` finds modules in its working folder before PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1",
           "BENTOML_HOME": str(work / "bentoml"), "TOKENIZERS_PARALLELISM": "false"}
    work.mkdir(parents=True)
    with contextlib.chdir(work):
        return {"help": cli(env, "--help"), "tasks": cli(env, "tasks"),
                "server": server(env, run_dir), "bento": bento_size(env, run_dir, source)}


def run(run_dir: Path, baseline: str = "d56821a") -> dict:
    run_dir = run_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="ukd-footprint-") as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree),
                        baseline], check=True, capture_output=True)
        try:
            codes = {"this code": measure(ROOT, run_dir, Path(tmp) / "new"),
                     f"baseline {baseline}": measure(tree, run_dir, Path(tmp) / "old")}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    new = codes["this code"]
    data = {"baseline": baseline, "run_dir": str(run_dir), "codes": codes,
            "goal": "no torch in --help, tasks or the server",
            "goal_met": not (new["help"]["imports_torch"] or new["tasks"]["imports_torch"]
                             or new["server"]["maps_libtorch"])}
    rows = [[name, c["help"]["seconds"], c["help"]["imports_torch"], c["tasks"]["seconds"],
             c["tasks"]["imports_torch"], c["server"]["ready_seconds"], c["server"]["rss_mib"],
             c["server"]["largest_process_rss_mib"], c["server"]["maps_libtorch"],
             c["bento"]["bento_mib"]] for name, c in codes.items()]
    table = markdown_table(["code", "--help s", "torch", "tasks s", "torch", "server ready s",
                            "server RSS MiB", "largest process MiB", "libtorch mapped",
                            "Bento MiB"], rows)
    markdown = ("Start-up costs, one code after the other on this machine "
                f"(`ukd-compress bench footprint RUN_DIR --baseline {baseline}`)\n\n{table}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    names = list(codes)
    colors = ["tab:green", "tab:gray"]
    left.barh(names, [c["tasks"]["seconds"] for c in codes.values()], color=colors)
    left.set(xlabel="seconds", title="ukd-compress tasks")
    right.barh(names, [c["server"]["rss_mib"] for c in codes.values()], color=colors)
    right.set(xlabel="MiB", title="server resident memory")
    write_results("footprint", data, markdown, fig)
    return data
