"""The BentoML service: predictions from an exported student, and compression jobs.

    ukd-compress serve RUN_DIR        # or: UKD_MODEL=RUN_DIR bentoml serve ukd_compress.service.service:UKDCompress

One service: typed requests, the ONNX Runtime session behind BentoML's adaptive batcher (see
batching.py), label names and the model's id in every answer, and the job API (jobs.py).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Annotated

import bentoml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .batching import Batcher
from .guard import TOKEN_REFUSED, RequestGuard, bearer_token_ok
from .jobs import JobError, Jobs, JobSpec
from .lifeline import stop_when_orphaned
from .model import ModelInfo, OnnxStudent
from .settings import Settings

settings = Settings.from_env()
# UKD_MODEL may name a BentoML model (`ukd-compress bento` saves one) instead of a folder;
# as a class attribute of the service, `bentoml build` packs it into the Bento.
MODEL_REF = (bentoml.models.BentoModel(settings.model)
             if settings.model and not Path(settings.model).exists() else None)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                        max_length=settings.max_chars)]


class PredictRequest(BaseModel):
    """Single texts, or sentence pairs for pair tasks (NLI, paraphrase): exactly one of them."""

    model_config = ConfigDict(extra="forbid")

    texts: Annotated[list[Text], Field(min_length=1, max_length=settings.max_items)] | None = None
    pairs: Annotated[list[tuple[Text, Text]],
                     Field(min_length=1, max_length=settings.max_items)] | None = None

    @model_validator(mode="after")
    def exactly_one(self) -> "PredictRequest":
        if (self.texts is None) == (self.pairs is None):
            raise ValueError("give exactly one of texts or pairs")
        return self


class Prediction(BaseModel):
    label: str | None                         # None for a regression task
    probabilities: dict[str, float] | None
    score: float | None = None                # the regression output (stsb)


class Predictions(BaseModel):
    model: str                                # sha256 of the ONNX file that answered
    predictions: list[Prediction]


class OneLinePerRejection(logging.Filter):
    """BentoML logs a ~24-line traceback for every request it refuses as invalid (a 4xx), which
    floods the log under bad traffic: such a record keeps one line, naming the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError) or (isinstance(exc, BentoMLException)
                                                and exc.error_code < 500):
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            record.msg = f"{record.getMessage()} refused: {type(exc).__name__}: {first}"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(OneLinePerRejection())


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


# --- the job API: GET routes, which BentoML's POST-only APIs do not give -----------------------
def _jobs(request: Request) -> Jobs:
    service = bentoml.get_current_service()
    service.authorize(request.headers.get("authorization"))
    return service.jobs


def _job_route(handler):
    async def endpoint(request: Request) -> JSONResponse:
        try:
            return JSONResponse(handler(_jobs(request), request))
        except JobError as exc:
            return error(exc.status, exc.message, exc.field)
    return endpoint


jobs_app = Starlette(routes=[
    Route("/", _job_route(lambda jobs, _: {"jobs": jobs.list()})),
    Route("/{job_id}", _job_route(lambda jobs, r: jobs.status(r.path_params["job_id"]))),
    Route("/{job_id}/resume", _job_route(lambda jobs, r: jobs.resume(r.path_params["job_id"])),
          methods=["POST"]),
])


@bentoml.service(name="ukd-compress", workers=1, traffic={"timeout": 60})
@bentoml.asgi_app(jobs_app, path="/jobs")
class UKDCompress:
    """Predictions over HTTP, and compression jobs submitted to the service."""

    stored_model = MODEL_REF

    def __init__(self) -> None:
        stop_when_orphaned()
        source = self.stored_model.path if MODEL_REF is not None else settings.model
        self.info = ModelInfo.load(source, settings.onnx_file) if source else None
        if self.info is not None:
            model = OnnxStudent(self.info, settings.threads)
            self.classify = Batcher(model.probabilities, settings.batching,
                                    settings.max_batch_size, settings.max_latency_ms)
        self.jobs = (Jobs(settings.models_root, settings.data_dir) if settings.job_token
                     else None)
        # BentoML, pydantic and ORT leave many long-lived objects that every full garbage
        # collection would walk. Without this, 2,000 requests from 32 clients had a p99 of
        # 142-161 ms instead of 64-77 (3 runs each, this torch-free server, 2-core CPU).
        gc.freeze()

    @bentoml.api
    async def predict(self, request: PredictRequest, /) -> Predictions:
        """Label and probabilities per label name for each text (or pair)."""
        if self.info is None:
            return error(503, "no model is served: start with `ukd-compress serve RUN_DIR`, "
                              "or set UKD_MODEL to a run folder or a BentoML model tag")
        io = self.info.io
        if io.pairs and request.texts is not None:
            return error(400, f"this model classifies sentence pairs (task {io.task}): "
                              'send {"pairs": [["premise", "hypothesis"]]}', "texts")
        if not io.pairs and request.pairs is not None:
            return error(400, f"this model classifies single texts (task {io.task}): "
                              'send {"texts": ["..."]}', "pairs")
        items = [[t] for t in request.texts] if request.texts else [list(p) for p in request.pairs]
        probabilities = await self.classify(items)
        return Predictions(model=self.info.model_id, predictions=[
            self._prediction(p, io.labels) for p in probabilities])

    @staticmethod
    def _prediction(probabilities: list[float], labels: list[str]) -> Prediction:
        if len(probabilities) == 1:
            return Prediction(label=None, probabilities=None, score=probabilities[0])
        best = max(range(len(labels)), key=probabilities.__getitem__)
        return Prediction(label=labels[best], probabilities=dict(zip(labels, probabilities)))

    @bentoml.api
    def compress(self, spec: JobSpec, /, ctx: bentoml.Context) -> dict:
        """Queue a distillation (GET /jobs/{id} follows it); needs the bearer token."""
        try:
            self.authorize(ctx.request.headers.get("authorization"))
            record = self.jobs.submit(spec)
        except JobError as exc:  # BentoML sets the status from ctx when the API takes ctx
            ctx.response.status_code = exc.status
            return {"error": exc.message, "field": exc.field}
        ctx.response.status_code = 202
        return record

    def authorize(self, header: str | None) -> None:
        if self.jobs is None:
            raise JobError(403, "compression jobs are off: start the server with UKD_JOB_TOKEN set")
        if not bearer_token_ok(header, settings.job_token):
            raise JobError(401, TOKEN_REFUSED, "authorization")

    def __is_alive__(self) -> bool:
        """/livez and /healthz: a job worker that died fails them (BentoML's hook)."""
        return self.jobs is None or self.jobs.alive

    @bentoml.on_shutdown
    def stop_jobs(self) -> None:
        if self.jobs is not None:
            self.jobs.shutdown()


UKDCompress.add_asgi_middleware(RequestGuard, job_token=settings.job_token,
                                drain_file=settings.drain_file)
