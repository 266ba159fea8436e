"""The README's Python client example runs as written against a real server."""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path
from typing import Any

from agentplane.demo.agent import demo_launcher
from agentplane.server import Runner, ServeOptions

README = Path(__file__).resolve().parent.parent / "README.md"


def _client_example() -> str:
    text = README.read_text()
    section = text.split("### Using the Python clients", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README lost its client example"
    return match.group(1)


async def test_readme_client_example_runs() -> None:
    runner = Runner(demo_launcher(), ServeOptions(api_token=None))
    ready = asyncio.Event()
    server = asyncio.create_task(
        runner.serve(host="127.0.0.1", grpc_port=0, on_ready=lambda _: ready.set())
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        code = _client_example().replace("50051", str(runner.grpc.port if runner.grpc else 0))
        namespace: dict[str, Any] = {}
        exec(  # the README's own code, wrapped in a coroutine
            "async def example():\n" + textwrap.indent(code, "    "), namespace
        )
        await asyncio.wait_for(namespace["example"](), 20)
        stats = runner.launcher.stats()
        assert stats.started == 1
        assert stats.ended_by_reason == {"CLOSED_BY_REQUEST": 1}
    finally:
        runner.stop()
        await asyncio.wait_for(server, 20)
