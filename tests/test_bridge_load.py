"""Load: 20 clients at once, 5 jobs each, on the real backend with small pictures.

Every job's result must arrive exactly once, on the connection that asked for it, with the
right pixels; and after the burst the process's memory must come back near where it started
(nothing per job, such as images or stacks, may stay referenced).
"""

from __future__ import annotations

import asyncio
import collections
import gc

import pytest
from layerlift.bridge.client import BridgeClient
from layerlift.inference.layers import psnr

from tests.bridge_fixtures import REAL_BACKEND, TOKEN, picture, real_provider, running_server

CLIENTS = 20
JOBS_EACH = 5
# Generous: allocator fragmentation and lazily grown caches, not per-job leaks (100 jobs).
RSS_MARGIN_MB = 48.0


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


async def one_client(url: str, index: int, received: collections.Counter) -> list[float]:
    async with BridgeClient(url, TOKEN) as client:
        images = {}
        for job in range(JOBS_EACH):
            image = picture(40, 28, seed=index * JOBS_EACH + job)
            record = await client.submit(image, backend=REAL_BACKEND)
            images[record.id] = image
        scores = []
        for job_id, image in images.items():
            stack = await client.wait(job_id)
            received[job_id] += 1
            scores.append(psnr(image, stack.composite()))
        # Nothing more may come for these jobs: a duplicate result would sit in a queue.
        await client.ping()
        assert not any(queue.qsize() for queue in client._jobs.values())
        return scores


@pytest.mark.timeout(120)
def test_twenty_clients_five_jobs_each():
    async def scenario():
        async with running_server(real_provider()) as server:
            # Warm up: imports, the backend instance, first-use caches.
            async with BridgeClient(server.url, TOKEN) as client:
                await client.run(picture(40, 28, seed=999), backend=REAL_BACKEND)
            gc.collect()
            before = rss_mb()
            received: collections.Counter = collections.Counter()
            results = await asyncio.gather(*(one_client(server.url, index, received)
                                             for index in range(CLIENTS)))
            async with BridgeClient(server.url, TOKEN) as client:
                states = collections.Counter(job.state for job in await client.list_jobs())
            gc.collect()
            after = rss_mb()
            return results, received, states, before, after

    results, received, states, before, after = asyncio.run(asyncio.wait_for(scenario(), 110))
    assert len(received) == CLIENTS * JOBS_EACH
    assert set(received.values()) == {1}
    assert states == {"done": CLIENTS * JOBS_EACH + 1}
    assert min(min(scores) for scores in results) >= 50.0
    print(f"RSS before {before:.1f} MB, after {after:.1f} MB")
    assert after - before < RSS_MARGIN_MB, (before, after)
