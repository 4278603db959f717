"""Runs the Photoshop panel's own tests (`node --test`) so that `make test` covers them.

They exercise the panel's modules against a fake `photoshop`/`uxp` module and, in
photoshop_plugin/test/integration.test.js, against the real bridge: the node test starts
`python -m layerlift.desktop.cli serve --port 0` itself (this interpreter, via
LAYERLIFT_PYTHON) with its own temporary LAYERLIFT_HOME, and stops it afterwards. A missing
Node fails the test: the panel would otherwise ship untested.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "photoshop_plugin"


def node_command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js 20+ is required for the Photoshop panel tests (node not on PATH)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30,
                             check=True).stdout.strip()
    major = int(re.match(r"v(\d+)", version).group(1))
    if major < 20:
        pytest.fail(f"Node.js 20+ is required for the Photoshop panel tests, found {version}")
    # Node 20 and 21 keep the WebSocket client behind a flag; 22+ has it on by default.
    return [node, "--experimental-websocket"] if major < 22 else [node]


@pytest.mark.timeout(300)
def test_panel_modules_with_node() -> None:
    files = sorted(str(path.relative_to(PLUGIN)) for path in (PLUGIN / "test").glob("*.test.js"))
    assert files, "no panel tests found"
    env = {**os.environ, "LAYERLIFT_PYTHON": sys.executable}
    env.pop("LAYERLIFT_HOME", None)  # the node test makes its own, separate from pytest's
    done = subprocess.run(
        [*node_command(), "--test", "--test-reporter=tap", *files],
        cwd=PLUGIN, env=env, capture_output=True, text=True, timeout=280,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    passed = re.search(r"^# pass (\d+)$", output, re.M)
    failed = re.search(r"^# fail (\d+)$", output, re.M)
    assert passed and int(passed.group(1)) > 0, output[-3000:]
    assert failed and int(failed.group(1)) == 0, output[-6000:]
    assert "integration" in " ".join(files)
