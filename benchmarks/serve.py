"""serve: requests/s and p50/p99 of /predict under a bounded load, adaptive batching on vs off,
against the same model's ONNX Runtime session in process.

Both modes serve the same exported student from a real `ukd-compress serve` on 127.0.0.1, take
the same requests (one real dev text each) from the same number of concurrent clients, in one
run. Right after the load, one client sends requests one at a time (light traffic after a burst).
Then the batching server takes requests of 32 texts each, and the same texts go through the
service's model code (tokeniser and ONNX Runtime session, as many threads) in this process: the
served items/s as a share of that is what HTTP, JSON and batching cost. The texts also go
through it one per call: where the model costs no less per item in batches (a small model on a
CPU), batching can raise requests/s only by the per-request work it saves.
Goals: batching gives at least 1.5x the requests/s of batch-1 serving at p99 <= 100 ms, light
traffic after the burst is within 1.2x of batch-1 serving's p50, and with 32 texts per request
the server keeps at least 85% of the in-process items/s.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ukd_compress.export.runtime import INT8_FILE, ONNX_FILE  # noqa: E402
from ukd_compress.service.launch import running_server  # noqa: E402

from .load import run_load  # noqa: E402
from .results import markdown_table, write_results  # noqa: E402

GOAL_RATIO, GOAL_P99_MS, GOAL_AFTER_BURST, GOAL_SHARE = 1.5, 100.0, 1.2, 0.85
BIG = 32  # texts per request in the comparison with the in-process session


def dev_payloads(run_dir: Path, n: int) -> list[dict]:
    """``n`` /predict bodies, one real dev example each, from the run's own task."""
    from ukd_compress.run_folder import RunFolder
    from ukd_compress.tasks import load_evals

    dev = next(iter(load_evals(RunFolder(run_dir).recipe())[1].values()))
    rows = [dev[i % len(dev)] for i in range(n)]
    if rows[0]["text_b"] is None:
        return [{"texts": [r["text_a"]]} for r in rows]
    return [{"pairs": [[r["text_a"], r["text_b"]]]} for r in rows]


def run(run_dir: Path, requests: int = 2000, concurrency: int = 32, int8: bool = False) -> dict:
    payloads = dev_payloads(run_dir, requests)
    modes = {}
    home = tempfile.mkdtemp(prefix="ukd-bench-bentoml-")
    onnx_file = INT8_FILE if int8 else ONNX_FILE
    big = [{key: [item for p in payloads[i:i + BIG] for item in p[key]] for key in payloads[0]}
           for i in range(0, min(len(payloads), 64 * BIG), BIG)]
    for mode in ("batching", "no-batching"):
        args = [str(run_dir), f"--{mode}"] + (["--int8"] if int8 else [])
        with running_server(*args, env={"BENTOML_HOME": home}) as url:
            run_load(f"{url}/predict", payloads[:64], concurrency)  # warm up
            result = run_load(f"{url}/predict", payloads, concurrency)
            after = run_load(f"{url}/predict", payloads[:100], concurrency=1)
            if mode == "batching":
                served = run_load(f"{url}/predict", big, concurrency=4)
        modes[mode] = {**result.summary(), "after_burst_p50_ms": after.summary()["p50_ms"]}
    on, off = modes["batching"], modes["no-batching"]
    ratio = on["requests_per_s"] / off["requests_per_s"]
    after_ratio = on["after_burst_p50_ms"] / off["after_burst_p50_ms"]
    served_items = served.summary()["requests_per_s"] * BIG
    own_items = in_process_items_per_s(run_dir, onnx_file, big)
    own_single = in_process_items_per_s(run_dir, onnx_file, payloads[:len(big) * BIG])
    share = served_items / own_items
    model_share = off["requests_per_s"] / own_single  # of batch-1 serving's time
    data = {"run_dir": str(run_dir), "requests": requests, "concurrency": concurrency,
            "model": onnx_file, "modes": modes,
            "speedup_requests_per_s": round(ratio, 2),
            "after_burst_p50_ratio": round(after_ratio, 2),
            "texts_per_request": BIG, "served_items_per_s": round(served_items, 1),
            "in_process_items_per_s": round(own_items, 1), "served_share": round(share, 3),
            "in_process_items_per_s_one_per_call": round(own_single, 1),
            "model_share_of_batch1_serving": round(model_share, 3),
            "goal": f">= {GOAL_RATIO}x requests/s at p99 <= {GOAL_P99_MS} ms; after a burst "
                    f"p50 within {GOAL_AFTER_BURST}x of batch-1; with {BIG} texts per request "
                    f">= {GOAL_SHARE:.0%} of in-process items/s",
            "goals": {"requests_per_s": ratio >= GOAL_RATIO and on["p99_ms"] <= GOAL_P99_MS,
                      "after_burst": after_ratio <= GOAL_AFTER_BURST,
                      "served_share": share >= GOAL_SHARE}}
    data["goal_met"] = all(data["goals"].values())
    rows = [[mode, m["requests"], m["errors"], m["requests_per_s"], m["p50_ms"], m["p99_ms"],
             m["after_burst_p50_ms"]] for mode, m in modes.items()]
    markdown = (f"Serving {data['model']} of `{run_dir.name}`: {requests} requests, "
                f"{concurrency} concurrent clients, 127.0.0.1\n\n"
                + markdown_table(["mode", "requests", "errors", "req/s", "p50 ms", "p99 ms",
                                  "p50 ms, 1 client after"], rows)
                + f"\nbatching / batch-1: {ratio:.2f}x requests/s, {after_ratio:.2f}x the p50 "
                  f"after the burst. {BIG} texts per request, 4 clients: {served_items:.0f} "
                  f"items/s served, {own_items:.0f} in process ({share:.0%}).\n"
                  f"In process, one text per call: {own_single:.0f} items/s ({BIG} per call: "
                  f"{own_items / own_single:.2f}x that per item); the model takes "
                  f"{model_share:.0%} of batch-1 serving's time.\n"
                  "Goals: "
                + ", ".join(f"{k} {'met' if v else '**missed**'}" for k, v in data["goals"].items())
                + "\n")
    write_results("serve", data, markdown, _figure(modes))
    return data


def in_process_items_per_s(run_dir: Path, onnx_file: str, requests: list[dict]) -> float:
    """Items/s of the service's own model code (tokeniser + ONNX Runtime, all cores) on the
    same requests, one after another in this process: the ceiling of what serving can reach."""
    from ukd_compress.service.model import ModelInfo, OnnxStudent

    student = OnnxStudent(ModelInfo.load(run_dir, onnx_file), os.cpu_count())
    items = [[[t] for t in r["texts"]] if "texts" in r else r["pairs"] for r in requests]
    student.probabilities(items[0])  # warm up
    started = time.perf_counter()
    for chunk in items:
        student.probabilities(chunk)
    return sum(len(c) for c in items) / (time.perf_counter() - started)


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
