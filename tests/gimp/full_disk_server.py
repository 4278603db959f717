"""A bridge server whose job store cannot save any result, as on a full disk.

For tests/gimp/test_gimp_e2e.py: the layers of a job reach the plug-in while the store writes
them, then the write fails; the plug-in must insert nothing. Run from the repository root as
`python -m tests.gimp.full_disk_server PORT` with LAYERLIFT_HOME set; it serves until killed.
"""

from __future__ import annotations

import asyncio
import errno
import sys
from pathlib import Path
from typing import Any

from layerlift.bridge.server import BridgeServer, ServerConfig
from layerlift.inference.job_store import JobStore
from layerlift.inference.jobs import JobRunner
from layerlift.inference.layers import LayerStack


class FullDisk(JobStore):
    """Saves job records, refuses every result."""

    def save(self, record: dict[str, Any], stack: LayerStack | None = None) -> Path:
        if stack is not None:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().save(record, stack)


async def serve(port: int) -> None:
    runner = JobRunner(store=FullDisk()).start()
    async with BridgeServer(runner, ServerConfig(port=port)):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
