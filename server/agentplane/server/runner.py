"""Runner: serves a launcher over gRPC, or runs one agent in the console.

Shutdown is graceful, then firm: the first SIGTERM/SIGINT turns readiness
NOT_SERVING and refuses new Starts at once, running sessions get the
launcher's ``drain_timeout`` to finish, the rest end with reason SHUTDOWN,
and the process exits 0. A second signal ends every session at once.

Example (``my_agent.py``)::

    Runner(AgentLauncher(create_agent=create_agent, join_call=join_call)).cli()

then ``python my_agent.py serve`` or ``python my_agent.py run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from agentplane.compat import vision_agents
from agentplane.core import AgentLauncher, EventKind
from agentplane.core import agent as agent_contract
from agentplane.gateway import CorsOptions
from agentplane.http.app import fastapi_application, gateway_app
from agentplane.http.embedded import InProcessBackend
from agentplane.http.server import HttpServer
from agentplane.ops.gc_policy import HeldHeapGc
from agentplane.ops.loop_monitor import LoopMonitor
from agentplane.ops.metrics import OperatorMetrics
from agentplane.rpc.server import GrpcServer
from agentplane.service.api import SessionAPI

from .commands import runner_cli
from .logs import install_context
from .options import ServeOptions
from .summary import StartupSummary, startup_summary

if TYPE_CHECKING:
    from agentplane.cluster.member import ClusterMember

logger = logging.getLogger("agentplane.runner")

SERVER_CLOSE_TIMEOUT = 5.0


class Runner:
    """Ties a launcher to its server and its command line."""

    def __init__(self, launcher: AgentLauncher, serve_options: ServeOptions | None = None) -> None:
        self.launcher = launcher
        if launcher.agent_adapter is None and not launcher.started:
            # Vision Agents agents get what their own launcher does for them
            # (only when the user's code imported vision_agents; see compat/).
            adapter = vision_agents.adapter_for(launcher.create_agent)
            if adapter is not None:
                launcher.agent_adapter = adapter
        self._serve_options = serve_options or ServeOptions()
        self.api = SessionAPI(launcher, self._serve_options.auth_policy())
        self.grpc: GrpcServer | None = None
        self.http_port: int | None = None
        self.operator_metrics = OperatorMetrics(launcher)
        # The HTTP app is built when first used: by the user customizing
        # runner.fast_api before serve() (a FastAPI app, as the reference's),
        # or by serve() itself (a Starlette app: FastAPI is never imported
        # for a runner nobody customizes). Same routes either way.
        self._demo_routes: list[Any] = []
        self._app: Any = self.serve_options.fast_api
        self._signals = 0
        self._stop: asyncio.Event | None = None
        self.cluster: ClusterMember | None = None
        # How the start-up summary names the agent (``--agent``'s module:attribute);
        # None: from create_agent's module and name.
        self.agent_label: str | None = None

    @property
    def serve_options(self) -> ServeOptions:
        """How ``serve()`` exposes the launcher; set it before serving (the command line does)."""
        return self._serve_options

    @serve_options.setter
    def serve_options(self, options: ServeOptions) -> None:
        # The API's auth (api_token, close tokens, callbacks) follows the options.
        self._serve_options = options
        self.api.auth = options.auth_policy()

    @property
    def http_built(self) -> bool:
        """Whether the HTTP app exists already (``fast_api`` used): its CORS options are fixed."""
        return self._app is not None

    @property
    def fast_api(self) -> Any:
        """The HTTP app ``serve()`` serves; customize it before serving.

        A FastAPI app when FastAPI is installed (``pip install
        'agentplane[fastapi]'``): ``@runner.fast_api.get("/custom")``,
        ``add_middleware``, ``include_router`` work as on the reference's.
        Without FastAPI, a Starlette app (``add_route``, ``add_middleware``,
        ``mount``). Either has the session routes, ``/health``, ``/ready``,
        ``/metrics``, ``/openapi.json`` and ``/docs``. ``ServeOptions(fast_api=app)``:
        that app, served as it is. Built on first use (decision 25).
        """
        if self._app is None:
            self._app = self._gateway_app(fastapi_application())
        return self._app

    def cli(self, args: list[str] | None = None) -> None:
        """Run the ``serve`` / ``run`` command line for this runner."""
        runner_cli(self).main(args=args, prog_name="agent")

    # --------------------------------------------------------------- serve

    async def serve(
        self,
        *,
        host: str | None = None,
        grpc_port: int | None = None,
        http_port: int | None = None,
        on_ready: Callable[[Runner], None] | None = None,
    ) -> None:
        """Serve until a signal (or ``stop()``), then drain and exit.

        gRPC listens on ``grpc_port``; with ``http_port`` the HTTP/JSON
        gateway (``fast_api``: the session routes, ``/health``, ``/ready``,
        ``/metrics``, ``/docs``) listens there too. Port 0
        picks a free port; the bound ports are logged and kept on the runner.
        """
        options = self.serve_options
        host = host or options.host
        install_context()  # log records name their request and session
        self._stop = asyncio.Event()
        if http_port is not None and self._app is None:
            self._app = self._gateway_app(None)  # nobody customized it: no FastAPI
        self._apply_demo_page()
        if options.expose_error_details:
            self.launcher.expose_error_details = True
        tls = options.tls()
        # Both ports' files are checked (TlsError) before either listens.
        grpc_ssl = tls.context(alpn=("h2",)) if tls is not None else None
        self.grpc = GrpcServer(self.launcher, self.api, options.grpc_limits)
        await self.grpc.start(
            host, options.grpc_port if grpc_port is None else grpc_port, ssl=grpc_ssl
        )
        logger.info("agentplane gRPC listening on %s:%s", host, self.grpc.port)
        if tls is not None:
            logger.info("agentplane serves TLS%s", _tls_note(options))
        self._install_signal_handlers()
        http: HttpServer | None = None
        held_heap_gc: HeldHeapGc | None = None
        loop_monitor: LoopMonitor | None = None
        member: ClusterMember | None = None
        self.operator_metrics.gc_pauses.install()
        try:
            if http_port is not None:
                http = HttpServer(
                    self._app,
                    host,
                    http_port,
                    limits=options.http_limits,
                    allowed_hosts=options.allowed_hosts,
                    tls=tls,
                )
                await http.start()
                self.http_port = http.port
                logger.info("agentplane HTTP listening on %s:%s", host, http.port)
            loop_monitor = self.operator_metrics.loop_monitor()
            loop_monitor.start()
            if options.redis_url:
                member = await self._join_cluster(host)
            # Readiness stays NOT_SERVING until warmup() finished.
            await self.launcher.start()
            if options.gc_freeze:
                held_heap_gc = HeldHeapGc(lambda: self.launcher.stats().in_flight)
                self.launcher.add_hooks(held_heap_gc)
                held_heap_gc.start()
            summary = self.startup_summary(host)
            logger.info(summary.text, extra={"summary": summary.fields})
            if on_ready is not None:
                on_ready(self)
            await self._stop.wait()
            await self.launcher.drain()
        finally:
            await self.launcher.shutdown()
            if member is not None:
                await member.leave()
            if http is not None:
                await http.stop(SERVER_CLOSE_TIMEOUT)
            self.grpc.close()
            try:
                await asyncio.wait_for(self.grpc.wait_closed(), SERVER_CLOSE_TIMEOUT)
            except TimeoutError:
                logger.warning("gRPC server did not close within %.0f s", SERVER_CLOSE_TIMEOUT)
            self._remove_signal_handlers()
            self.operator_metrics.gc_pauses.remove()
            if held_heap_gc is not None:
                await held_heap_gc.aclose()
            if loop_monitor is not None:
                await loop_monitor.aclose()
            logger.info("agentplane stopped")

    def startup_summary(self, host: str) -> StartupSummary:
        """What the server serves, where, and under which rules (logged once ready)."""
        return startup_summary(self, host)

    def _gateway_app(self, application: Callable[..., Starlette] | None) -> Any:
        options = self.serve_options
        from agentplane.demo.page import demo_routes

        self._demo_routes = list(demo_routes())
        return gateway_app(
            InProcessBackend(self.api, self.launcher),
            metrics=self.operator_metrics.exposition,
            cors=CorsOptions(
                allow_origins=tuple(options.cors_allow_origins),
                allow_methods=tuple(options.cors_allow_methods),
                allow_headers=tuple(options.cors_allow_headers),
                allow_credentials=options.cors_allow_credentials,
            ),
            extra_routes=self._demo_routes,
            application=application or Starlette,
        )

    def _apply_demo_page(self) -> None:
        # The option may change after __init__ (`serve --no-demo-page`); the
        # routes of our own app follow it. A user's own app is left as it is.
        if self.serve_options.fast_api is not None or self.serve_options.demo_page:
            return
        if self._app is None:
            return  # no HTTP port
        routes = self._app.router.routes
        routes[:] = [r for r in routes if all(r is not d for d in self._demo_routes)]

    def stop(self) -> None:
        """Begin a graceful stop, as the first SIGTERM does."""
        if self._stop is not None:
            self._stop.set()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "%s: draining (up to %.0f s); send it again to stop at once",
                signal.Signals(signum).name,
                self.launcher.drain_timeout,
            )
            self.stop()
        else:
            logger.info("%s again: ending every session now", signal.Signals(signum).name)
            task = asyncio.get_running_loop().create_task(self.launcher.shutdown())
            # Referenced by the loop until done; shutdown() is awaited again in serve().
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

    # ------------------------------------------------------------- console

    async def run_console(
        self,
        call_type: str,
        call_id: str,
        *,
        video_track_override: str | None = None,
        open_demo: bool = True,
    ) -> int:
        """Run one agent in ``call_id`` until it ends or Ctrl-C; print its events.

        As Vision Agents' ``run``: ``video_track_override`` goes to the agent
        before it joins, and with ``open_demo`` the agent's demo UI opens
        (``agent.edge.open_demo_for_agent``, where the agent has one).
        Returns a process exit code: 0 unless the agent failed.
        """
        self._stop = asyncio.Event()
        self._install_signal_handlers()
        try:
            await self.launcher.start()
            record = await self.launcher.start_session(
                call_id, call_type, video_track_override_path=video_track_override
            )
            print(f"session {record.session_id} started in call {call_id} ({call_type})")
            agent = self.launcher.agent_of(record.session_id)
            if open_demo and await agent_contract.open_demo(agent, call_type, call_id):
                logger.info("opened the agent's demo UI")
            watcher = asyncio.create_task(self._print_events(record.session_id))
            stopper = asyncio.create_task(self._stop.wait())
            await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            final = await self.launcher.close_session(record.session_id)
            watcher.cancel()
            await asyncio.gather(watcher, stopper, return_exceptions=True)
            reason = final.end_reason.name.lower() if final.end_reason else "unknown"
            print(
                f"session {final.session_id} ended: {reason}"
                + (f" ({final.error_message})" if final.error_message else "")
            )
            return 1 if final.error_message else 0
        finally:
            await self.launcher.shutdown()
            self._remove_signal_handlers()

    async def _join_cluster(self, host: str) -> ClusterMember:
        """This node in the cluster of ``redis_url`` (the launcher gets its registry)."""
        try:  # only a cluster needs redis-py
            from agentplane.cluster.keys import ClusterKeys
            from agentplane.cluster.member import ClusterMember
        except ModuleNotFoundError as missing:
            if (missing.name or "").partition(".")[0] != "redis":
                raise
            raise RuntimeError(
                "a cluster (--redis-url) needs redis-py: pip install 'agentplane[redis]'"
            ) from missing

        options = self.serve_options
        assert options.redis_url is not None and self.grpc is not None
        member = ClusterMember(
            options.redis_url,
            advertise_address=options.advertise_address or _reachable(host, self.grpc.port),
            heartbeat=options.cluster_heartbeat,
            keys=ClusterKeys(options.redis_prefix),
            retention_seconds=self.launcher.retention_seconds,
        )
        try:
            await member.join(self.launcher)
        except BaseException:
            await member.leave()
            raise
        self.cluster = member
        return member

    async def _print_events(self, session_id: str) -> None:
        async for event in self.launcher.events.watch(session_id, 0):
            if event.kind is EventKind.AGENT:
                print(f"  event {event.payload['name']}: {event.payload['data']}")
            elif event.kind is EventKind.STATE_CHANGED:
                print(f"  state {event.payload['state'].name.lower()}")


def _reachable(host: str, port: int | None) -> str:
    """The address to advertise for a port bound on ``host``.

    A wildcard bind (0.0.0.0, ::) names no address another node could use:
    the machine's host name stands in (``--advertise-address`` says better).
    """
    if host in ("", "0.0.0.0", "::"):
        return f"{socket.gethostname()}:{port}"
    return f"{host}:{port}"


def _tls_note(options: ServeOptions) -> str:
    note = f" on both ports: certificate {options.tls_cert}"
    if options.tls_client_ca:
        note += f"; client certificates required, issued by {options.tls_client_ca}"
    return note
