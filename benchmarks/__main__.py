"""Benchmarks; each writes benchmarks/results/<name>.json, .png and .md.

  serve RUN_DIR   requests/s and p50/p99 of /predict, adaptive batching on vs off
  infer RUN_DIR   teacher vs student, PyTorch vs ONNX Runtime fp32/int8, batch 1 and 32
  train           step time and memory per method against kd; the teacher cache's saving
  quality         dev metric per method over seeds, fixed teacher and budget
  all RUN_DIR     all four, with their defaults
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(prog="ukd-compress bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="benchmark", required=True)
    serve = commands.add_parser("serve", help="requests/s and p99, adaptive batching on vs off")
    serve.add_argument("run_dir", type=Path, help="a run folder with onnx/ (ukd-compress export)")
    serve.add_argument("--requests", type=int, default=2000)
    serve.add_argument("--concurrency", type=int, default=32)
    serve.add_argument("--int8", action="store_true")
    infer = commands.add_parser("infer", help="teacher vs student latency, PyTorch vs ORT")
    infer.add_argument("run_dir", type=Path, help="a run folder with onnx/ (ukd-compress export)")
    infer.add_argument("--repeats", type=int, default=20)
    train = commands.add_parser("train", help="step time per method; teacher cache on vs off")
    train.add_argument("--task", default="sst2")
    train.add_argument("--steps", type=int, default=20)
    quality = commands.add_parser("quality", help="dev metric per method, several seeds")
    quality.add_argument("--task", default="rte")
    quality.add_argument("--seeds", type=int, default=3)
    quality.add_argument("--max-train-samples", type=int, default=2000)
    quality.add_argument("--epochs", type=int, default=3)
    quality.add_argument("--methods", default=",".join(("ce", "kd", "pkd", "alp", "ukd", "ukd+alp")))
    everything = commands.add_parser("all", help="train, infer, serve, quality")
    everything.add_argument("run_dir", type=Path, help="a run folder with onnx/ (for infer, serve)")
    args = parser.parse_args()
    if args.benchmark == "all":
        from . import infer, quality, serve, train

        results = {"train": train.run(), "infer": infer.run(args.run_dir),
                   "serve": serve.run(args.run_dir), "quality": quality.run()}
        print(json.dumps({k: v.get("goals_met", v.get("goal_met")) for k, v in results.items()}))
    elif args.benchmark == "serve":
        from .serve import run

        print(json.dumps(run(args.run_dir, args.requests, args.concurrency, args.int8), indent=1))
    elif args.benchmark == "infer":
        from .infer import run

        print(json.dumps(run(args.run_dir, repeats=args.repeats), indent=1))
    elif args.benchmark == "train":
        from .train import run

        print(json.dumps(run(args.task, args.steps), indent=1))
    elif args.benchmark == "quality":
        from .quality import run

        print(json.dumps(run(args.task, args.seeds, args.max_train_samples, args.epochs,
                             tuple(args.methods.split(","))), indent=1))


if __name__ == "__main__":
    main()
