"""Test helpers for agents served by agentplane: a real server inside a test, and waits.

``serving()`` does for an agent what grpclib's ``ChannelFor`` or aiohttp's
``TestServer`` do for theirs: it runs a real :class:`~agentplane.server.Runner`
on loopback, free ports (gRPC, and the HTTP/JSON gateway unless
``http=False``), enters once the server is ready, hands out connected
clients, and stops it all within a bound when the block ends. ``wait_until``
waits, with a deadline, for what a test cannot await directly.

Nothing here needs pytest; both work in any asyncio test (pytest-asyncio,
``unittest.IsolatedAsyncioTestCase``) or, as below, in a plain script.

Example (runs as it is)::

    import asyncio

    from agentplane.clients.betterproto import CloseRequest, EndReason, StartRequest
    from agentplane.server import AgentLauncher
    from agentplane.testing import serving, wait_until


    async def create_agent(**metadata):
        return {"voice": metadata.get("voice", "alloy")}


    async def join_call(agent, call_type, call_id, **kwargs):
        await asyncio.Event().wait()  # in the call until the session ends


    async def main():
        launcher = AgentLauncher(create_agent, join_call)
        async with serving(launcher) as served:
            started = await served.stub.start(StartRequest(call_id="call-1"), timeout=5)
            await wait_until(lambda: launcher.stats().in_flight == 1)
            closed = await served.stub.close(
                CloseRequest(session_id=started.session_id), timeout=5
            )
            assert closed.session.end_reason == EndReason.CLOSED_BY_REQUEST
            print("HTTP/JSON gateway at", served.http_url)


    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from grpclib.client import Channel

from agentplane.clients.betterproto import SessionServiceStub
from agentplane.net import client_context
from agentplane.server import AgentLauncher, Runner, ServeOptions

__all__ = ["Served", "WaitTimeout", "serving", "trusting", "wait_until"]

HOST = "127.0.0.1"


class WaitTimeout(AssertionError, TimeoutError):
    """A wait ran out of time: a failed assertion to a test runner, a TimeoutError to code."""


@dataclass(frozen=True)
class Served:
    """A running server and clients connected to it (what ``serving()`` yields)."""

    runner: Runner
    grpc_port: int
    #: The grpclib channel to the gRPC port (closed when ``serving()`` ends).
    channel: Channel
    #: The betterproto2 SessionService client over ``channel``.
    stub: SessionServiceStub
    _http_port: int | None = None

    @property
    def launcher(self) -> AgentLauncher:
        return self.runner.launcher

    @property
    def grpc_target(self) -> str:
        """``"127.0.0.1:<port>"``, as grpcio's ``insecure_channel`` takes it."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_port(self) -> int:
        """The HTTP/JSON gateway's port (not with ``http=False``)."""
        if self._http_port is None:
            raise RuntimeError("serving(..., http=False) serves no HTTP")
        return self._http_port

    @property
    def tls(self) -> bool:
        """Whether the server serves TLS (``ServeOptions(tls_cert=..., tls_key=...)``)."""
        return self.runner.serve_options.tls_cert is not None

    @property
    def http_url(self) -> str:
        """``"http://127.0.0.1:<port>"`` (``https://`` over TLS; not with ``http=False``)."""
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.http_port}"


@contextlib.asynccontextmanager
async def serving(
    agent: AgentLauncher | Runner,
    options: ServeOptions | None = None,
    *,
    http: bool = True,
    ready: bool = True,
    ready_timeout: float = 15.0,
    stop_timeout: float = 15.0,
    client_ssl: ssl.SSLContext | None = None,
) -> AsyncIterator[Served]:
    """Serve ``agent`` on 127.0.0.1 (port 0) for the length of the block.

    ``agent`` is a launcher, served with ``options`` (default: an open
    server, ``ServeOptions(api_token=None)``, whatever the environment says),
    or a ``Runner`` set up beforehand (custom ``fast_api`` routes, say), served
    as it is. The block is entered once the server is ready, that is, once the
    launcher's ``warmup()`` ran; ``ready=False`` enters it as soon as the ports
    listen (readiness still NOT_SERVING while warmup runs). Either wait is
    bounded by ``ready_timeout``; a server that fails to start re-raises its
    error here.

    On exit the clients are closed and the server stopped the way a SIGTERM
    stops it, except that sessions still running end at once (reason
    SHUTDOWN) instead of draining. A server that has not stopped after
    ``stop_timeout`` seconds is cancelled and ``WaitTimeout`` raised.

    A server with TLS options is dialled over TLS: with ``client_ssl`` (a
    client certificate in it for mutual TLS), else trusting the served
    certificate itself (``trusting(cert)``).
    """
    if isinstance(agent, Runner):
        if options is not None:
            raise ValueError("options are for a launcher: a Runner brings its own")
        runner = agent
    else:
        runner = Runner(agent, options if options is not None else ServeOptions(api_token=None))
    became_ready = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        runner.serve(
            host=HOST,
            grpc_port=0,
            http_port=0 if http else None,
            on_ready=lambda _: became_ready.set(),
        ),
        name="agentplane.testing.serving",
    )
    channel: Channel | None = None
    try:
        if ready:
            await _until_ready(task, became_ready.wait(), ready_timeout, "ready")
        else:
            await _until_ready(
                task,
                wait_until(lambda: _listening(runner, http), ready_timeout),
                ready_timeout,
                "listening",
            )
        assert runner.grpc is not None and runner.grpc.port is not None
        cert = runner.serve_options.tls_cert
        if client_ssl is None and cert is not None:
            client_ssl = trusting(cert)
        channel = Channel(HOST, runner.grpc.port, ssl=client_ssl)
        yield Served(
            runner=runner,
            grpc_port=runner.grpc.port,
            channel=channel,
            stub=SessionServiceStub(channel),
            _http_port=runner.http_port if http else None,
        )
    finally:
        if channel is not None:
            channel.close()
        await _stop(runner, task, stop_timeout)
    if not task.cancelled():
        task.result()  # an error of the server itself fails the test


def trusting(cert: str, client_cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A client context trusting the server certificate ``cert`` itself (not only its CA).

    ALPN h2 as gRPC needs; ``client_cert`` and ``key`` for mutual TLS. Give
    httpx (``verify=``) a context of its own: it sets the ALPN it wants.
    """
    context = client_context(cert, client_cert, key)
    # A leaf (or an intermediate) is a trust anchor of its own.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def _listening(runner: Runner, http: bool) -> bool:
    grpc_bound = runner.grpc is not None and runner.grpc.port is not None
    return grpc_bound and (not http or runner.http_port is not None)


async def _until_ready(
    task: asyncio.Task[None], condition: Awaitable[Any], within: float, what: str
) -> None:
    """Wait for ``condition``; a serve task that ends first re-raises its error."""
    waiter = asyncio.ensure_future(condition)
    try:
        done, _ = await asyncio.wait(
            {waiter, task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError, WaitTimeout):
            await waiter
    if task in done:
        task.result()  # raises why the server did not start
        raise RuntimeError(f"the server stopped before it was {what}")
    if waiter not in done:
        raise WaitTimeout(f"the server was not {what} within {within} s")


async def _stop(runner: Runner, task: asyncio.Task[None], within: float) -> None:
    runner.stop()  # as SIGTERM: readiness drops, Starts are refused
    try:
        # Sessions still running end now rather than after drain_timeout.
        await asyncio.wait_for(runner.launcher.shutdown(), within)
        sessions_ended = True
    except TimeoutError:
        sessions_ended = False
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        task.cancel()
        # Bounded too: a server stuck in its own clean-up may not even end when cancelled.
        await asyncio.wait({task}, timeout=within)
        raise WaitTimeout(f"the server did not stop within {within} s; it was cancelled")
    if not sessions_ended:
        raise WaitTimeout(f"the launcher's sessions did not end within {within} s")


# ``timeout`` is the wait's own deadline: an asyncio.timeout() around the call
# could not say what was awaited (ASYNC109).
async def wait_until(
    predicate: Callable[[], object],
    timeout: float = 5.0,  # noqa: ASYNC109
    interval: float = 0.005,
    *,
    what: str | None = None,
) -> Any:
    """Wait until ``predicate()`` is true; answer its (true) value.

    ``predicate`` is sync or async; it is checked at once, then every
    ``interval`` seconds. After ``timeout`` seconds (real time) ``WaitTimeout``
    names what was awaited: ``what``, or the predicate's own source. An
    exception of the predicate ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"waited {timeout} s for {what or _describe(predicate)} (last value: {value!r})"
            )
        await asyncio.sleep(interval)


def _describe(predicate: Callable[..., object]) -> str:
    """A lambda's own text (``lambda: x == 1``), else the function's name."""
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    if getattr(predicate, "__name__", "") != "<lambda>":
        return name
    try:
        line = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return name
    text = line[line.index("lambda") :] if "lambda" in line else line
    # Drop what closes the call the lambda was passed to: ``wait_until(lambda: f(x))``.
    depth = 0
    for index, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                return text[:index].rstrip(", ")
        elif char == "," and depth == 0:
            return text[:index]
    return text
