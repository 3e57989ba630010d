"""serve: requests/s and p50/p99 of /predict under a bounded load, adaptive batching on vs off.

Both modes serve the same exported student from a real `ukd-compress serve` on 127.0.0.1, take
the same requests (one real dev text each) from the same number of concurrent clients, in one
run. Right after the load, one client sends requests one at a time (light traffic after a burst).
Goals: batching gives at least 3x the requests/s of batch-1 serving at p99 <= 100 ms, and light
traffic after the burst is within 1.2x of batch-1 serving's p50.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from service.launch import running_server  # noqa: E402

from .load import run_load  # noqa: E402
from .results import markdown_table, write_results  # noqa: E402

GOAL_RATIO, GOAL_P99_MS, GOAL_AFTER_BURST = 3.0, 100.0, 1.2


def dev_payloads(run_dir: Path, n: int) -> list[dict]:
    """``n`` /predict bodies, one real dev example each, from the run's own task."""
    from ukd_compress.pipeline import load_task
    from ukd_compress.recipe import Recipe

    dev = next(iter(load_task(Recipe.from_yaml(run_dir / "recipe.yaml")).evals.values()))
    rows = [dev[i % len(dev)] for i in range(n)]
    if rows[0]["text_b"] is None:
        return [{"texts": [r["text_a"]]} for r in rows]
    return [{"pairs": [[r["text_a"], r["text_b"]]]} for r in rows]


def run(run_dir: Path, requests: int = 2000, concurrency: int = 32, int8: bool = False) -> dict:
    payloads = dev_payloads(run_dir, requests)
    modes = {}
    home = tempfile.mkdtemp(prefix="ukd-bench-bentoml-")
    for mode in ("batching", "no-batching"):
        args = [str(run_dir), f"--{mode}"] + (["--int8"] if int8 else [])
        with running_server(*args, env={"BENTOML_HOME": home}) as url:
            run_load(f"{url}/predict", payloads[:64], concurrency)  # warm up
            result = run_load(f"{url}/predict", payloads, concurrency)
            after = run_load(f"{url}/predict", payloads[:100], concurrency=1)
        modes[mode] = {**result.summary(), "after_burst_p50_ms": after.summary()["p50_ms"]}
    on, off = modes["batching"], modes["no-batching"]
    ratio = on["requests_per_s"] / off["requests_per_s"]
    after_ratio = on["after_burst_p50_ms"] / off["after_burst_p50_ms"]
    data = {"run_dir": str(run_dir), "requests": requests, "concurrency": concurrency,
            "model": "model_int8.onnx" if int8 else "model.onnx", "modes": modes,
            "speedup_requests_per_s": round(ratio, 2),
            "after_burst_p50_ratio": round(after_ratio, 2),
            "goal": f">= {GOAL_RATIO}x requests/s at p99 <= {GOAL_P99_MS} ms; after a burst "
                    f"p50 within {GOAL_AFTER_BURST}x of batch-1",
            "goal_met": (ratio >= GOAL_RATIO and on["p99_ms"] <= GOAL_P99_MS
                         and after_ratio <= GOAL_AFTER_BURST)}
    rows = [[mode, m["requests"], m["errors"], m["requests_per_s"], m["p50_ms"], m["p99_ms"],
             m["after_burst_p50_ms"]] for mode, m in modes.items()]
    markdown = (f"Serving {data['model']} of `{run_dir.name}`: {requests} requests, "
                f"{concurrency} concurrent clients, 127.0.0.1\n\n"
                + markdown_table(["mode", "requests", "errors", "req/s", "p50 ms", "p99 ms",
                                  "p50 ms, 1 client after"], rows)
                + f"\nbatching / batch-1: {ratio:.2f}x requests/s, {after_ratio:.2f}x the p50 "
                  f"after the burst; goal {data['goal']}: "
                + ("met" if data["goal_met"] else "**missed**") + "\n")
    write_results("serve", data, markdown, _figure(modes))
    return data


def _figure(modes: dict) -> plt.Figure:
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    names = list(modes)
    left.bar(names, [modes[m]["requests_per_s"] for m in names], color=["tab:green", "tab:gray"])
    left.set_ylabel("requests / s")
    for i, stat in enumerate(("p50_ms", "p99_ms")):
        right.bar([x + 0.4 * i for x in range(len(names))], [modes[m][stat] for m in names],
                  width=0.4, label=stat.replace("_ms", ""))
    right.axhline(GOAL_P99_MS, color="red", linestyle="--", linewidth=1, label="p99 goal")
    right.set_xticks([x + 0.2 for x in range(len(names))], names)
    right.set_ylabel("latency (ms)")
    right.legend()
    fig.suptitle("/predict under load: adaptive batching on vs off")
    return fig
