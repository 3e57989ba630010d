"""Adaptive batching inside the service's process, with BentoML's own batcher.

BentoML batches an API that takes one list argument; /predict takes texts or pairs, so batching
behind it needs a second service reached through ``bentoml.depends``. On bentoml 1.4.40 that hop
reset connections under 32 concurrent clients (500s; bentoml#4971, fix pending in PR #5698). So
/predict hands its items to the CORK dispatcher that BentoML's batchable APIs use, in process:
the same adaptive batching (it learns the batch latency and waits only when that pays), no hop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import bentoml
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml.exceptions import ServiceUnavailable


MODEL_BATCH = bentoml.metrics.Histogram(
    name="ukd_model_batch_size", documentation="Items per ONNX Runtime call (see /metrics)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))


def _overloaded():
    raise ServiceUnavailable("the model is overloaded; retry later")


class Batcher:
    """``await batcher(items)``: run ``predict`` on items of concurrent callers, batched or not.

    With batching off every call runs alone, one at a time: batch-1 serving, the baseline.
    """

    def __init__(self, predict: Callable[[list], Sequence], batching: bool, max_batch_size: int,
                 max_latency_ms: int):
        self._predict = predict
        self._one_at_a_time = anyio.CapacityLimiter(1)
        self._batched = None
        if batching:
            dispatcher = CorkDispatcher(max_latency_ms, max_batch_size, fallback=_overloaded,
                                        get_batch_size=len)
            self._batched = dispatcher(self._run_batch)

    def predict(self, items: list) -> Sequence:
        MODEL_BATCH.observe(len(items))
        return self._predict(items)

    async def __call__(self, items: list) -> list:
        if self._batched is None:
            return list(await anyio.to_thread.run_sync(self.predict, items,
                                                       limiter=self._one_at_a_time))
        return await self._batched(items)

    async def _run_batch(self, requests: Sequence[list]) -> list[list]:
        """One model call for all waiting requests; each gets its own slice back."""
        flat = [item for items in requests for item in items]
        outputs = await anyio.to_thread.run_sync(self.predict, flat,
                                                 limiter=self._one_at_a_time)
        result, start = [], 0
        for items in requests:
            result.append(list(outputs[start:start + len(items)]))
            start += len(items)
        return result
