"""The ``ukd-compress`` command line: distill, teacher, tasks."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from .errors import CheckFailed, Interrupted, UserError
from .methods import METHODS
from .recipe import METHOD_CHOICES, PRECISIONS, PSEUDO_HEAD_KINDS, VOCAB_METHODS

# CLI option -> (recipe section, field). Only options the user gives override the recipe.
RECIPE_OPTIONS = {
    "teacher": ("teacher", "name"), "pseudo_head": ("teacher", "pseudo_head"),
    "student": ("student", "spec"), "student_layers": ("student", "layers"),
    "student_hidden": ("student", "hidden"), "student_vocab": ("student", "vocab_size"),
    "student_tokenizer": ("student", "tokenizer"), "student_vocab_method": ("student", "vocab_method"),
    "task": ("task", "name"), "data_dir": ("task", "data_dir"),
    "train_file": ("task", "train_file"), "eval_file": ("task", "eval_file"),
    "text_column": ("task", "text_columns"), "label_column": ("task", "label_column"),
    "max_length": ("task", "max_length"), "max_train_samples": ("task", "max_train_samples"),
    "max_eval_samples": ("task", "max_eval_samples"),
    "method": ("method", "name"), "alpha": ("method", "alpha"), "beta": ("method", "beta"),
    "gamma": ("method", "gamma"), "delta": ("method", "delta"),
    "temperature": ("method", "temperature"), "attention_space": ("method", "attention_space"),
    "attention_scale": ("method", "attention_scale"), "layer_pooling": ("method", "layer_pooling"),
    "attention_temperature": ("method", "attention_temperature"),
    "ukd_layers": ("method", "ukd_layers"), "teacher_layers": ("method", "teacher_layers"),
    "last_layer": ("method", "last_layer"), "teacher_gate": ("method", "teacher_gate"),
    "drop_weak_layers": ("method", "drop_weak_layers"), "layer_reduce": ("method", "layer_reduce"),
    "gamma_schedule": ("method", "gamma_schedule"),
    "epochs": ("training", "epochs"), "batch_size": ("training", "batch_size"),
    "lr": ("training", "lr"), "grad_accum": ("training", "grad_accum"),
    "seed": ("training", "seed"), "teacher_cache": ("training", "cache_teacher"),
    "group_by_length": ("training", "group_by_length"),
    "checkpoint_every": ("training", "checkpoint_every"),
    "checkpoint_minutes": ("training", "checkpoint_minutes"),
    "precision": ("training", "precision"), "max_steps": ("training", "max_steps"),
}


class Group(click.Group):
    """Turns a :class:`UserError` into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except CheckFailed as exc:
            click.echo(f"check failed: {exc}", err=True)
            sys.exit(1)
        except Interrupted as exc:
            click.echo(f"interrupted: {exc}", err=True)
            sys.exit(130)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _quiet_libraries() -> None:
    """Progress bars and warnings of the training stack off; called by the commands that load
    it (importing transformers imports torch, which `tasks`, `serve` and --help never need)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()


@click.group(cls=Group)
@click.version_option(package_name="ukd-compress")
def cli() -> None:
    """Turn a fine-tuned transformer teacher into a small student with Universal-KD.

    \b
    Start here:
      ukd-compress tasks                     what tasks exist, which work offline
      ukd-compress distill                   MiniLM-L6 teacher on SST-2 -> 2-layer student
      ukd-compress distill --teacher roberta-large --student distilroberta --task mnli
    """


def data_options(f):
    options = [
        click.option("--task", help="GLUE task name (see `ukd-compress tasks`).  [default: sst2]"),
        click.option("--data-dir", type=click.Path(file_okay=False),
                     help="Folder in GLUE's TSV layout (<dir>/SST-2/train.tsv ...); "
                          "default $UKD_DATA_DIR, else ./glue_data, else the hub."),
        click.option("--train-file", type=click.Path(dir_okay=False),
                     help="Your own training data (.csv, .tsv, .jsonl) instead of GLUE."),
        click.option("--eval-file", type=click.Path(dir_okay=False),
                     help="Your own evaluation data, same columns as --train-file."),
        click.option("--text-column", multiple=True,
                     help="Text column of --train-file; give it twice for sentence pairs."),
        click.option("--label-column", help="Label column of --train-file.  [default: label]"),
        click.option("--max-length", type=click.IntRange(8, 4096), help="Tokens per example."),
        click.option("--max-train-samples", type=click.IntRange(1),
                     help="Train on a random subset.  [default: all on GPU, 8000 on CPU]"),
        click.option("--max-eval-samples", type=click.IntRange(1), help="Evaluate on a subset."),
        click.option("--epochs", type=click.IntRange(1),
                     help="Passes over the training data.  [default: distill 6, teacher 3]"),
        click.option("--batch-size", type=click.IntRange(1),
                     help="Examples per step.  [default: 256 on GPU, 32 on CPU]"),
        click.option("--lr", type=click.FloatRange(0, min_open=True),
                     help="Learning rate.  [default: 1e-4 (a bilstm/cnn student 1e-3) at batch "
                          "32, times sqrt(batch / 32) at another: 2.83e-4 at 256]"),
        click.option("--seed", type=int),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_recipe(ctx: click.Context, recipe_file: str | None):
    """The recipe file (or defaults) with every option the user typed applied on top; the
    command that runs it validates it (a recipe file is validated as it is read)."""
    from .recipe import Recipe

    recipe = Recipe.from_yaml(recipe_file) if recipe_file else Recipe()
    for param, value in ctx.params.items():
        if param not in RECIPE_OPTIONS:
            continue
        if ctx.get_parameter_source(param) not in (click.core.ParameterSource.COMMANDLINE,
                                                   click.core.ParameterSource.ENVIRONMENT):
            continue
        section, field = RECIPE_OPTIONS[param]
        recipe = recipe.replace(section, **{field: list(value) if isinstance(value, tuple) else value})
    return recipe


@cli.command()
@click.option("--teacher", help="Fine-tuned classifier (hub name or folder), or a base to fine-tune "
              "first: minilm-l6 (ships with the install), bert-base, roberta-large, distilroberta."
              "  [default: minilm-l6]")
@click.option("--student", help="teacher:K (K evenly spaced layers of the teacher), teacher:0,5 "
              "(the layers named, from 0), a hub name or folder (distilroberta), bilstm or cnn.  "
              "[default: teacher:2]")
@click.option("--method", type=click.Choice(list(METHODS)),
              help="Loss: " + "; ".join(f"{m.name}: {m.summary}" for m in METHODS.values())
                   + ".  [default: ukd]")
@click.option("--recipe", "recipe_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML recipe giving every setting at once (options override it).")
@data_options
@click.option("--alpha", type=float, help="Weight of the task loss.")
@click.option("--beta", type=float, help="Weight of KD on final logits.")
@click.option("--gamma", type=float, help="Weight of the Universal-KD layer loss.")
@click.option("--delta", type=float, help="Weight of the PKD / ALP-KD hidden-state loss.")
@click.option("--temperature", type=click.FloatRange(0, min_open=True))
@click.option("--attention-space", type=click.Choice(METHOD_CHOICES["attention_space"]),
              help="Where student layers attend over teacher layers.")
@click.option("--attention-scale/--no-attention-scale", default=None,
              help="Divide attention scores by sqrt(labels).")
@click.option("--attention-temperature", type=click.FloatRange(0, min_open=True),
              help="Divides the attention scores; higher spreads a student layer over more "
                   "teacher layers.")
@click.option("--ukd-layers", type=click.Choice(METHOD_CHOICES["ukd_layers"]),
              help="Student layers with a UKD term (all_but_last: the last one has KD already).")
@click.option("--last-layer", type=click.Choice(METHOD_CHOICES["last_layer"]),
              help="In UKD, the last layer speaks through its pseudo classifier or through the "
                   "model's own classifier (teacher and student alike).")
@click.option("--teacher-layers", type=click.Choice(METHOD_CHOICES["teacher_layers"]),
              help="Teacher layers a student layer attends to: all; those at or above its "
                   "relative depth (window); or all, but the top one alone for the last student "
                   "layer (top_for_last).")
@click.option("--teacher-gate", type=click.Choice(METHOD_CHOICES["teacher_gate"]),
              help="Per training example, attend to all teacher layers, or only to those whose "
                   "pseudo classifier gets its label right (all of them if none does).")
@click.option("--drop-weak-layers", type=click.FloatRange(0),
              help="Leave out teacher layers whose pseudo classifier scores this many points "
                   "below the best one.")
@click.option("--layer-reduce", type=click.Choice(METHOD_CHOICES["layer_reduce"]),
              help="The UKD term over student layers.")
@click.option("--gamma-schedule", type=click.Choice(METHOD_CHOICES["gamma_schedule"]),
              help="UKD weight over training: constant, decaying linearly to 0, or UKD alone "
                   "for half the steps then CE + KD alone.")
@click.option("--pseudo-head", type=click.Choice(PSEUDO_HEAD_KINDS), help="Pseudo classifier shape.")
@click.option("--layer-pooling", type=click.Choice(METHOD_CHOICES["layer_pooling"]),
              help="A transformer layer's vector: mean over tokens, or the first token.")
@click.option("--student-layers", type=click.IntRange(1), help="Depth of a bilstm/cnn student.")
@click.option("--student-hidden", type=click.IntRange(1), help="Width of a bilstm/cnn student.")
@click.option("--student-vocab", type=click.IntRange(200),
              help="Give a teacher:K, bilstm or cnn student its own, smaller vocabulary of N "
                   "tokens chosen on the training texts (e.g. 8000; MiniLM's has 30,522), "
                   "embeddings initialised from the teacher's.")
@click.option("--student-vocab-method", type=click.Choice(VOCAB_METHODS),
              help="trim: the teacher's N most used tokens, rows copied; train: a new WordPiece "
                   "(the tokenizers library), new rows averaged from the teacher's pieces."
                   "  [default: trim]")
@click.option("--student-tokenizer", help="Or: the student's tokenizer, a folder or hub name.")
@click.option("--grad-accum", type=click.IntRange(1), help="Batches per optimizer step.")
@click.option("--teacher-cache/--no-teacher-cache", default=None,
              help="Reuse the frozen teacher's outputs after their first pass.  [default: on]")
@click.option("--group-by-length/--no-group-by-length", default=None,
              help="Batch texts of similar length (less padding; 1.5x faster steps on "
                   "SST-2).  [default: on]")
@click.option("--checkpoint-minutes", type=click.FloatRange(0, min_open=True),
              help="Minutes between resumable checkpoints (one is also saved every epoch)."
                   "  [default: 5]")
@click.option("--checkpoint-every", type=click.IntRange(1),
              help="Also checkpoint every this many steps.")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="auto: bf16 autocast on CUDA, fp32 on CPU.")
@click.option("--max-steps", type=click.IntRange(1), help="Stop after this many optimizer steps.")
@click.option("--output", type=click.Path(file_okay=False),
              help="Run folder to create.  [default: runs/<task>-<student>-<method>-<time>]")
@click.option("--resume", type=click.Path(exists=True, file_okay=False),
              help="Continue an interrupted run from its <run>.partial folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--export", "export_onnx", is_flag=True,
              help="Then export the student to ONNX with int8 (as `ukd-compress export --int8`).")
@click.pass_context
def distill(ctx: click.Context, recipe_file: str | None, output: str | None, resume: str | None,
            quiet: bool, export_onnx: bool, **_options) -> None:
    """Distil a teacher into a student, strip it, and write a run folder.

    \b
    The run folder holds recipe.yaml, checkpoints/, student/ (a stock model folder with no
    pseudo classifiers: AutoModelForSequenceClassification.from_pretrained loads it),
    report.json and report.png. Ctrl-C saves a checkpoint; --resume RUN.partial continues.
    """
    _quiet_libraries()
    from .pipeline import run_distill

    if resume:
        typed = [f"--{name.replace('_', '-')}" for name in ctx.params
                 if name not in ("resume", "quiet", "export_onnx")
                 and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if typed:
            raise UserError(f"--resume continues a run with the recipe it saved; it takes no "
                            f"{', '.join(typed)}")
    recipe = build_recipe(ctx, recipe_file)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    run_dir = run_distill(recipe, Path(output) if output else None,
                          Path(resume) if resume else None, quiet)
    if export_onnx:
        from .export.run import export_run

        _print_export(export_run(run_dir, int8=True))


def _raise_keyboard_interrupt(*_args) -> None:
    raise KeyboardInterrupt


@cli.command()
@click.option("--base", default="minilm-l6", show_default=True,
              help="Pretrained encoder: an alias (minilm-l6, bert-base, roberta-large, "
                   "distilroberta), a hub name or a folder.")
@data_options
@click.option("--pseudo-head", type=click.Choice(PSEUDO_HEAD_KINDS), help="Pseudo classifier shape.")
@click.option("--output", type=click.Path(file_okay=False),
              help="Where to save the teacher.  [default: the cache, $UKD_HOME/teachers]")
@click.pass_context
def teacher(ctx: click.Context, base: str, output: str | None, **_options) -> None:
    """Fine-tune a teacher and train its pseudo classifiers (stage 1), both cached."""
    _quiet_libraries()
    from .distill import device_type, make_accelerator
    from .pipeline import training_data
    from .teacher import finetune_teacher, load_teacher_with_heads, teacher_folder

    recipe = build_recipe(ctx, None).validate()
    for name in ("epochs", "lr", "batch_size"):
        if ctx.params[name] is not None:
            recipe = recipe.replace("teacher", **{f"finetune_{name}": ctx.params[name]})
    recipe = recipe.for_device(device_type())
    data = training_data(recipe)
    folder = Path(output) if output else teacher_folder(base, data.spec, recipe, data.teacher_train)
    if folder.exists():
        raise UserError(f"{folder} already exists; remove it or pass another --output")
    finetune_teacher(base, data.spec, data.teacher_train, data.evals, recipe, folder)
    device = make_accelerator(recipe.training).device
    *_, report, _ = load_teacher_with_heads(str(folder), data.spec, data.train, data.evals,
                                           recipe, data.source, device)
    click.echo(f"teacher saved to {folder}")
    for split, metrics in report["teacher"].items():
        click.echo(f"  {split}: {metrics}")
        layers = ", ".join(f"{next(iter(m.values())):.1f}" for m in report["layers"][split])
        click.echo(f"  pseudo classifiers by layer: {layers}")


def _int_list(_ctx, _param, value: str) -> list[int]:
    try:
        values = [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if any(v < 1 for v in values):
        raise click.BadParameter("values must be at least 1")
    return values


@cli.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--opset", type=click.IntRange(14, 21), default=18, show_default=True)
@click.option("--int8", is_flag=True, help="Also write a dynamically int8-quantised model_int8.onnx.")
@click.option("--budget-ms", type=click.FloatRange(0, min_open=True),
              help="Fail (exit 1) when the student's ONNX p95 latency exceeds this.")
@click.option("--batch", default="1", show_default=True, callback=_int_list,
              help="Batch sizes to time, e.g. 1,32.")
@click.option("--seq-len", default="128", show_default=True, callback=_int_list,
              help="Sequence lengths to time, e.g. 64,128.")
@click.option("--repeats", type=click.IntRange(1), default=20, show_default=True)
def export_command(run_dir: str, opset: int, int8: bool, budget_ms: float | None,
                   batch: list[int], seq_len: list[int], repeats: int) -> None:
    """Export RUN_DIR's student to ONNX (RUN_DIR/onnx), check parity, time it.

    \b
    onnx/ loads with optimum's ORTModelForSequenceClassification.from_pretrained and with a
    plain onnxruntime.InferenceSession (io.json names the inputs, outputs and labels).
    latency.json and latency.png compare teacher and student, PyTorch and ONNX Runtime.
    """
    _quiet_libraries()
    from .export.run import export_run

    result = export_run(Path(run_dir), opset, int8, budget_ms, batch, seq_len, repeats)
    _print_export(result)
    latency = result["latency"]
    if budget_ms is not None and not latency["within_budget"]:
        click.echo(f"budget missed: student p95 {latency['student_p95_ms']:.2f} ms > "
                   f"{budget_ms} ms", err=True)
        sys.exit(1)


def _print_export(result: dict) -> None:
    p = result["parity"]
    click.echo(f"parity: max |torch - onnx| {p['max_abs_diff']:.2e}, labels agree "
               f"{100 * p['label_agreement']:.2f}% on {p['examples']} dev examples")
    click.echo(f"dev metric onnx fp32 {result['metric_fp32']}"
               + (f", int8 {result['metric_int8']}" if "metric_int8" in result else ""))
    ratios = result.get("onnx_of_teacher_weights", {})
    click.echo("onnx files: " + ", ".join(
        f"{name} {size / 1e6:.1f} MB" + (f" ({100 * ratios[name]:.0f}% of the teacher's weights)"
                                         if name in ratios else "")
        for name, size in result["onnx_bytes"].items()))
    click.echo(f"{'model':20s} {'batch':>5s} {'seq':>4s} {'p50 ms':>8s} {'p95 ms':>8s} "
               f"{'p99 ms':>8s} {'ex/s':>8s}")
    for r in result["latency"]["rows"]:
        click.echo(f"{r['model']:20s} {r['batch']:5d} {r['seq_len']:4d} {r['p50_ms']:8.2f} "
                   f"{r['p95_ms']:8.2f} {r['p99_ms']:8.2f} {r['examples_per_s']:8.1f}")


@cli.command()
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to listen on all.")
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True)
@click.option("--int8", is_flag=True, help="Serve model_int8.onnx (`export --int8` writes it).")
@click.option("--batching/--no-batching", default=True, show_default=True,
              help="BentoML adaptive batching: requests arriving together run as one batch.")
@click.option("--max-batch-size", type=click.IntRange(2), default=64, show_default=True)
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime threads.  [default: all cores]")
@click.option("--models-root", type=click.Path(file_okay=False), default="models",
              show_default=True, help="Compression jobs read and write only under this folder.")
@click.option("--token", envvar="UKD_JOB_TOKEN", show_envvar=True,
              help="Bearer token the job API requires; without one, jobs are off.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="GLUE folder for compression jobs.  [default: $UKD_DATA_DIR]")
@click.option("--drain-timeout", type=click.FloatRange(0), default=10, show_default=True,
              help="On SIGTERM, /readyz turns 503 and requests are still served until no client "
                   "connection is open, at most this many seconds; then the server stops.")
def serve(run_dir: str | None, host: str, port: int, int8: bool, batching: bool,
          max_batch_size: int, threads: int | None, models_root: str, token: str | None,
          data_dir: str | None, drain_timeout: float) -> None:
    """Serve RUN_DIR's exported student over HTTP with BentoML, and compression jobs.

    \b
      POST /predict  {"texts": ["a great film"]}  or  {"pairs": [["premise", "hypothesis"]]}
      POST /compress {"teacher": "minilm-l6", "student": "teacher:2", "task": "sst2"}
                     (with Authorization: Bearer $UKD_JOB_TOKEN)
      GET  /jobs/ID  queued, running with progress, done with the report, failed, interrupted
      /healthz /readyz /metrics, and the API docs at /
    RUN_DIR needs onnx/ (`ukd-compress export RUN_DIR`); without it only jobs are served.
    """
    from .export.runtime import INT8_FILE, ONNX_FILE, onnx_folder, ort_session

    env = {**os.environ, "UKD_BATCHING": "1" if batching else "0",
           "UKD_MAX_BATCH_SIZE": str(max_batch_size),
           "UKD_MODELS_ROOT": str(Path(models_root).resolve())}
    if run_dir:
        folder = onnx_folder(run_dir)
        onnx_file = INT8_FILE if int8 else ONNX_FILE
        if not (folder / onnx_file).is_file():
            raise UserError(f"{folder / onnx_file} does not exist; run `ukd-compress export "
                            f"--int8 {run_dir}`")
        ort_session(folder / onnx_file, threads=1)  # a corrupt file: one line here, not a crash loop
        env.update(UKD_MODEL=str(folder.resolve()), UKD_ONNX_FILE=onnx_file)
    elif not token:
        raise UserError("nothing to serve: give a RUN_DIR, or a --token for compression jobs")
    for name, value in (("UKD_JOB_TOKEN", token), ("UKD_THREADS", threads),
                        ("UKD_DATA_DIR", data_dir and str(Path(data_dir).resolve()))):
        if value:
            env[name] = str(value)
    _check_port_free(host, port)
    argv = [sys.executable, "-m", "bentoml", "serve", "ukd_compress.service.service:UKDCompress",
            "--host", host, "--port", str(port)]
    from .service.supervise import supervise

    sys.exit(supervise(argv, env, port, drain_timeout))


def _check_port_free(host: str, port: int) -> None:
    """One line instead of the server's traceback when the port is taken."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}; "
                            "pass another --port") from None


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--name", default="ukd-student", show_default=True, help="BentoML model name.")
@click.option("--build", is_flag=True, help="Then run `bentoml build` with this model.")
def bento(run_dir: str, name: str, build: bool) -> None:
    """Save RUN_DIR's ONNX student in BentoML's model store (and build a Bento with it).

    \b
    The Bento serves it as `ukd-compress serve` does:
      ukd-compress bento RUN_DIR --build
      UKD_MODEL=ukd-student:latest bentoml serve ukd-compress:latest
      bentoml containerize ukd-compress:latest   (the image sets UKD_MODEL itself)
    """
    from .export.bento import save_bento_model

    tag = save_bento_model(Path(run_dir), name)
    click.echo(f"saved {tag} in the BentoML model store")
    if build:
        root = Path(__file__).resolve().parents[1]
        if not (root / "bentofile.yaml").is_file():
            raise UserError(f"no bentofile.yaml in {root}: build from a source checkout")
        argv = [sys.executable, "-m", "bentoml", "build", str(root)]
        os.chdir(root)  # bentoml build reads no file outside its working folder
        os.execvpe(argv[0], argv, {**os.environ, "UKD_MODEL": tag})


@cli.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Benchmarks: `ukd-compress bench serve RUN_DIR` (see `ukd-compress bench --help`).

    Results go to benchmarks/results/ as JSON, PNG and a Markdown table.
    """
    argv = [sys.executable, "-m", "ukd_compress.benchmarks", *args]
    os.execv(argv[0], argv)


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Folder in GLUE's TSV layout.  [default: $UKD_DATA_DIR, else ./glue_data]")
def tasks(data_dir: str | None) -> None:
    """List the GLUE tasks, their columns, labels and metric, and which work offline."""
    from .tasks import GLUE_TASKS, find_data_dir, offline_tasks

    folder = find_data_dir(data_dir)
    here = offline_tasks(folder)
    click.echo(f"GLUE folder: {folder or 'none found (set --data-dir or UKD_DATA_DIR)'}")
    click.echo(f"{'task':6s} {'columns':22s} {'labels':36s} {'metric':9s} offline")
    for name, spec in GLUE_TASKS.items():
        click.echo(f"{name:6s} {', '.join(spec.text_columns):22s} "
                   f"{', '.join(spec.label_names):36s} {spec.metric:9s} "
                   f"{'yes' if name in here else 'no (hub only)'}")
    click.echo("Any task also works from your own files: --train-file/--eval-file.")


def main() -> None:
    cli(prog_name="ukd-compress")
