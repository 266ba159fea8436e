"""`agentplane serve` serves the demo page by default; `--no-demo-page` turns it off."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

LISTENING = re.compile(r"agentplane HTTP listening on ([\d.]+):(\d+)")


async def _demo_status(*flags: str) -> tuple[int, int]:
    """(status of /demo/, status of /demo/agentplane.js) from a real `agentplane serve`."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTPLANE_API_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("agentplane")),
        *("serve", "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0", *flags),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    seen = []
    try:
        async with asyncio.timeout(30):
            while (
                match := LISTENING.search(line := (await proc.stderr.readline()).decode())
            ) is None:
                seen.append(line)
                if not line:
                    pytest.fail("agentplane serve exited:\n" + "".join(seen))
        base = f"http://{match[1]}:{match[2]}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            page = await http.get("/demo/")
            module = await http.get("/demo/agentplane.js")
        return page.status_code, module.status_code
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)


async def test_serve_has_the_demo_page_by_default() -> None:
    assert await _demo_status() == (200, 200)


async def test_no_demo_page_flag() -> None:
    assert await _demo_status("--no-demo-page") == (404, 404)
