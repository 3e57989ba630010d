"""A bounded HTTP load: N requests from C concurrent clients, every answer kept for checking."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import numpy as np


@dataclass
class LoadResult:
    statuses: list[int]
    bodies: list[dict]
    latencies_ms: list[float]
    wall_s: float

    def summary(self) -> dict[str, float]:
        latencies = np.array(self.latencies_ms)
        return {"requests": len(self.statuses), "wall_s": round(self.wall_s, 2),
                "requests_per_s": round(len(self.statuses) / self.wall_s, 1),
                "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                "p99_ms": round(float(np.percentile(latencies, 99)), 2),
                "errors": sum(s != 200 for s in self.statuses)}


def run_load(url: str, payloads: list[dict], concurrency: int = 32,
             timeout: float = 120) -> LoadResult:
    """POST each payload to ``url`` with ``concurrency`` clients in flight at once."""
    return asyncio.run(_load(url, payloads, concurrency, timeout))


async def _load(url: str, payloads: list[dict], concurrency: int, timeout: float) -> LoadResult:
    statuses, bodies, latencies = [0] * len(payloads), [{}] * len(payloads), [0.0] * len(payloads)
    pending = iter(range(len(payloads)))

    async def client(http: aiohttp.ClientSession) -> None:
        for i in pending:  # the clients share one iterator: each request is sent once
            start = time.perf_counter()
            async with http.post(url, json=payloads[i]) as response:
                bodies[i] = await response.json(content_type=None)
            latencies[i] = 1000 * (time.perf_counter() - start)
            statuses[i] = response.status

    # aiohttp, not httpx: under 32 concurrent requests httpx spent ~8 ms of CPU per request
    # here, as much as the server, and the 2-core machine measured the client instead.
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return LoadResult(statuses, bodies, latencies, wall)
