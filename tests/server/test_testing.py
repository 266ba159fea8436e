"""agentplane.testing: what users get for their own tests, run as they would run it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import httpx
import pytest

import agentplane.clients.betterproto as bp
import agentplane.testing
from agentplane.server import AgentLauncher, Runner, ServeOptions
from agentplane.testing import WaitTimeout, serving, wait_until
from tests.support import FakeAgents, ServerAgents


def _docstring_example() -> str:
    doc = agentplane.testing.__doc__ or ""
    return textwrap.dedent(doc.split("Example (runs as it is)::", 1)[1])


def test_the_docstring_example_runs() -> None:
    # In a fresh interpreter, as a user would paste it (asyncio.run, no pytest).
    done = subprocess.run(
        [sys.executable, "-c", _docstring_example()],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "HTTP/JSON gateway at http://127.0.0.1:" in done.stdout


def test_testing_imports_no_pytest() -> None:
    code = "import sys, agentplane.testing; assert 'pytest' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


async def test_serving_yields_ready_clients_on_both_ports() -> None:
    agents = ServerAgents()
    async with serving(agents.launcher()) as served:
        assert served.grpc_target == f"127.0.0.1:{served.grpc_port}"
        assert served.http_url == f"http://127.0.0.1:{served.http_port}"
        assert served.launcher is served.runner.launcher
        assert served.launcher.accepting  # ready: warmed up, Starts admitted
        started = await served.stub.start(bp.StartRequest(call_id="c1"), timeout=5)
        async with httpx.AsyncClient(base_url=served.http_url) as http:
            got = await http.get(f"/sessions/{started.session_id}")
        assert got.json()["state"] == "SESSION_STATE_RUNNING"
    # The session still running when the block ended was ended at once.
    record = await served.launcher.get_session(started.session_id)
    assert record.end_reason is not None and record.end_reason.name == "SHUTDOWN"
    assert served.runner.grpc is not None and served.runner.grpc.port == served.grpc_port


async def test_serving_grpc_only() -> None:
    async with serving(FakeAgents().launcher(), http=False) as served:
        started = await served.stub.start(bp.StartRequest(call_id="c1"), timeout=5)
        got = await served.stub.get(bp.GetRequest(session_id=started.session_id), timeout=5)
        assert got.session is not None and got.session.call_id == "c1"
        assert served.runner.http_port is None
        with pytest.raises(RuntimeError, match="http=False"):
            served.http_url  # noqa: B018


async def test_serving_a_runner_as_it_is() -> None:
    runner = Runner(FakeAgents().launcher(), ServeOptions(api_token="t0ken"))
    async with serving(runner) as served:
        assert served.runner is runner
        async with httpx.AsyncClient(base_url=served.http_url) as http:
            assert (await http.post("/sessions", json={"call_id": "c"})).status_code == 401
    with pytest.raises(ValueError, match="Runner"):
        async with serving(runner, ServeOptions()):
            pass


async def test_serving_enters_before_warmup_with_ready_false() -> None:
    warm = asyncio.Event()

    async def warmup() -> None:
        await warm.wait()

    launcher = FakeAgents().launcher(warmup=warmup)
    async with serving(launcher, http=False, ready=False) as served:
        assert not served.launcher.accepting
        warm.set()
        await wait_until(lambda: served.launcher.accepting)


async def test_a_server_that_cannot_start_fails_the_block() -> None:
    def broken() -> None:
        raise OSError("no warmup for you")

    launcher = AgentLauncher(lambda **_: None, lambda *a, **k: None, warmup=broken)
    with pytest.raises(OSError, match="no warmup for you"):
        async with serving(launcher):
            pytest.fail("entered a server that never became ready")


async def test_a_server_that_does_not_stop_is_cancelled_and_reported() -> None:
    agents = FakeAgents()
    stuck = asyncio.Event()

    async def never_shuts_down() -> None:
        await stuck.wait()

    with pytest.raises(WaitTimeout, match=r"did not stop within 0\.2 s"):
        async with serving(agents.launcher(), stop_timeout=0.2) as served:
            # The launcher hangs in shutdown: the bound ends the wait.
            served.launcher.shutdown = never_shuts_down  # type: ignore[method-assign]


async def test_wait_until_names_what_it_waited_for() -> None:
    state = {"done": False}
    with pytest.raises(WaitTimeout) as timed_out:
        await wait_until(lambda: state["done"], timeout=0.05)
    message = str(timed_out.value)
    assert 'lambda: state["done"]' in message and "0.05 s" in message
    assert isinstance(timed_out.value, AssertionError)
    assert isinstance(timed_out.value, TimeoutError)

    with pytest.raises(TimeoutError, match="the flag"):
        await wait_until(lambda: False, timeout=0.01, what="the flag")

    async def ready() -> list[int]:
        return [1]

    assert await wait_until(ready) == [1]  # async predicates; the true value is answered

    def broken() -> bool:
        raise KeyError("no")

    with pytest.raises(KeyError):
        await wait_until(broken)
