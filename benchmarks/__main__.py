"""Benchmarks; each writes benchmarks/results/<name>.json, .png and .md.

  serve RUN_DIR   requests/s and p50/p99 of /predict, adaptive batching on vs off
  infer RUN_DIR   teacher vs student, PyTorch vs ONNX Runtime fp32/int8, batch 1 and 32
  train           step time and memory per method against kd; the teacher cache's saving
  scale           the headline command's shapes: examples/s, TFLOP/s, MFU, projected minutes
  quality         a paired study: dev metric per method over seeds, tasks and budgets
  first-run       the README's first command from an empty cache, beside a baseline revision
  footprint RUN_DIR  start-up costs of the CLI and the server, and the Bento's size, vs a revision
  vocab           students with their own smaller vocabularies: size, accuracy, latency
  all RUN_DIR     all four, with their defaults
"""

from __future__ import annotations

import argparse
import json
import re
import sys
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
    scale = commands.add_parser("scale", help="roberta-large -> distilroberta shapes: "
                                "throughput, MFU, projected headline minutes")
    scale.add_argument("--batch-size", type=int,
                       help="examples per step  [default: the loop's: 256 on a GPU, 32 on CPU]")
    scale.add_argument("--steps", type=int, default=12,
                       help="batches per phase, each run once untimed first")
    quality = commands.add_parser(
        "quality", help="a paired study of methods over seeds (resumable, parallel)",
        description="Default: SST-2, 8,000 examples, 6 epochs, teacher:2, ce/kd/ukd, seeds 0-2. "
                    "Options replace that row's settings (or every row of --study).",
        epilog="Methods take knobs in brackets: --methods 'kd,ukd,ukd[teacher_layers=window]'. "
               "The same command continues a stopped study.")
    quality.add_argument("--study", type=Path, help="YAML: seeds and rows (task, train_examples, "
                         "epochs, batch_size, students, methods); see benchmarks/studies/")
    quality.add_argument("--task")
    quality.add_argument("--train-examples", type=int, help="0: the whole training set")
    quality.add_argument("--epochs", type=int)
    quality.add_argument("--batch-size", type=int, help="the teacher's and the students' batch, "
                         "learning rates by the square-root rule  [default: the device's, 32 "
                         "CPU, 256 GPU]")
    quality.add_argument("--students", help="comma-separated, e.g. teacher:2,bilstm")
    quality.add_argument("--methods", help="comma-separated methods and variants")
    quality.add_argument("--seeds", type=int, help="seeds 0..N-1  [default: 3]")
    quality.add_argument("--jobs", type=int, default=1, help="runs at once (CPU cores are split)")
    quality.add_argument("--reference", default="kd", help="the method paired differences are to")
    quality.add_argument("--workdir", type=Path, default=Path("runs/quality-study"),
                         help="where the runs are kept (and found again on a rerun)")
    quality.add_argument("--name", default="quality", help="results/<name>.json, .md, .png")
    quality.add_argument("--results-dir", type=Path, help="[default: benchmarks/results]")
    quality.add_argument("--data-dir", help="a GLUE-layout folder  [default: $UKD_DATA_DIR]")
    first_run = commands.add_parser("first-run", help="the default run from an empty cache, "
                                    "this code vs --baseline (a git revision), one after the other")
    first_run.add_argument("--baseline", default="c4cc04c", help="[default: c4cc04c]")
    footprint = commands.add_parser("footprint", help="the CLI's and the server's start-up "
                                    "costs and the Bento's size, this code vs --baseline")
    footprint.add_argument("run_dir", type=Path, help="a run folder with onnx/ (ukd-compress export)")
    footprint.add_argument("--baseline", default="d56821a", help="[default: d56821a]")
    vocab = commands.add_parser("vocab", help="teacher:2 students with their own smaller "
                                "vocabularies: parameters, file sizes, accuracy, latency",
                                description="SST-2, 8,000 examples, 6 epochs, ukd, paired seeds.")
    vocab.add_argument("--vocabs", default="12000,8000,4000",
                       type=lambda t: tuple(map(int, t.split(","))),
                       help="vocabulary sizes beside the teacher's  [default: 12000,8000,4000]")
    vocab.add_argument("--vocab-methods", default="trim,train", type=lambda t: tuple(t.split(",")),
                       help="how each is made  [default: trim,train]")
    vocab.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1  [default: 3]")
    vocab.add_argument("--jobs", type=int, default=1, help="runs at once (CPU cores are split)")
    vocab.add_argument("--workdir", type=Path, default=Path("runs/vocab-study"),
                       help="where the runs are kept (and found again on a rerun)")
    vocab.add_argument("--data-dir", help="a GLUE-layout folder  [default: $UKD_DATA_DIR]")
    everything = commands.add_parser("all", help="train, infer, serve, quality")
    everything.add_argument("run_dir", type=Path, help="a run folder with onnx/ (for infer, serve)")
    args = parser.parse_args()
    if args.benchmark == "all":
        from . import infer, quality, serve, train

        results = {"train": train.run(), "infer": infer.run(args.run_dir),
                   "serve": serve.run(args.run_dir),
                   "quality": quality.run_study(quality.load_study(None, {}), Path("runs/quality-study"))}
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
    elif args.benchmark == "scale":
        from .scale import run

        print(json.dumps(run(args.batch_size, args.steps), indent=1))
    elif args.benchmark == "vocab":
        from .results import RESULTS
        from .vocab import run

        run(args.jobs, args.workdir, args.seeds, args.data_dir, args.vocabs, args.vocab_methods)
        print((RESULTS / "vocab.md").read_text())
    elif args.benchmark == "footprint":
        from .footprint import run

        print(json.dumps(run(args.run_dir, args.baseline), indent=1))
    elif args.benchmark == "first-run":
        from .first_run import run

        print(json.dumps(run(args.baseline), indent=1))
    elif args.benchmark == "quality":
        from .quality import load_study, run_study
        from .results import RESULTS

        split = lambda text: text and [t for t in re.split(r",(?![^\[]*\])", text) if t]  # noqa: E731
        study = load_study(args.study, {
            "task": args.task, "epochs": args.epochs, "students": split(args.students),
            "methods": split(args.methods), "seeds": args.seeds,
            "train_examples": args.train_examples, "batch_size": args.batch_size})
        out = args.results_dir or RESULTS
        result = run_study(study, args.workdir, args.jobs, args.name, args.reference,
                           args.data_dir, out)
        print((out / f"{args.name}.md").read_text())
        if result["failures"]:
            sys.exit(1)


if __name__ == "__main__":
    main()
