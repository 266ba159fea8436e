"""SessionService's behaviour, once, for every transport.

``SessionAPI`` takes protobuf requests plus a ``RequestContext`` and answers
protobuf responses, raising ``LauncherError``s. The grpclib servicer and the
in-process HTTP gateway are thin adapters around it, so authentication,
permissions, limits and errors are the same whichever way a call arrives.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.core import AgentLauncher, SessionNotFound, SessionRecord
from agentplane.core.events import LiveSend
from agentplane.core.models import EventKind, SessionEvent
from agentplane.core.validation import validate_session_id

from .auth import AuthPolicy, PermissionDenied, RequestContext, user_id
from .convert import event_message, fill_session, session_message, set_time, struct_to_dict
from .get_cache import GetAnswers
from .listing import decode_page_token, encode_page_token, page_size, query_from_request

# Sends one event's message at once if the transport can (see ``EventLog.watch``'s ``live``).
LiveEventSend = Callable[[api_pb.StreamEventsResponse], bool]


def _naming(ctx: RequestContext, session_id: str = "", call_id: str = "") -> RequestContext:
    """``ctx`` with the request's ``session_id`` / ``call_id`` (those it has) as path fields."""
    fields = {}
    if session_id:
        fields["session_id"] = session_id
    if call_id:
        fields["call_id"] = call_id
    return RequestContext(ctx.method, ctx.metadata, ctx.peer, ctx.user, fields)


class SessionAPI:
    """The RPCs of ``agentplane.v1.SessionService``.

    Its answers are read-only: Get answers the same message object while a
    session is unchanged (``GetAnswers``), and every watcher of an event
    gets the same message.
    """

    def __init__(self, launcher: AgentLauncher, auth: AuthPolicy) -> None:
        self.launcher = launcher
        self.auth = auth
        self._gets = GetAnswers()

    async def _caller(
        self, ctx: RequestContext, session_id: str = "", call_id: str = ""
    ) -> RequestContext:
        """The authenticated caller: ``ctx`` naming the request's ids, with its user set.

        With no token and no hook nothing reads it: ``ctx`` is answered as it
        came (its user is None, as authentication would leave it).
        """
        if not self.auth.reads_context and ctx.user is None:
            return ctx
        return await self.auth.authenticate(_naming(ctx, session_id, call_id))

    async def _session(self, session_id: str, call_id: str) -> SessionRecord:
        record = await self.launcher.get_session(session_id)  # it validates the id
        if call_id and record.call_id != call_id:
            # Call-scoped routes: a session of another call does not exist here.
            raise SessionNotFound(session_id)
        return record

    async def start(
        self, request: api_pb.StartRequest, ctx: RequestContext
    ) -> api_pb.StartResponse:
        ctx = await self._caller(ctx, call_id=request.call_id)
        await self.auth.check_start(ctx)
        record = await self.launcher.start_session(
            request.call_id,
            request.call_type,
            metadata=struct_to_dict(request.metadata),
            idempotency_key=request.idempotency_key,
            created_by=user_id(ctx.user),
        )
        response = api_pb.StartResponse(session_id=record.session_id, call_id=record.call_id)
        set_time(response.session_started_at, record.started_at)
        if self.auth.enabled:
            response.close_token = self.auth.close_token(record.session_id)
        return response

    async def close(
        self, request: api_pb.CloseRequest, ctx: RequestContext
    ) -> api_pb.CloseResponse:
        if request.close_token:
            # A close token authorizes this one close by itself (sendBeacon
            # cannot send credentials); a wrong one is refused outright.
            validate_session_id(request.session_id)
            if not self.auth.close_token_valid(request.session_id, request.close_token):
                raise PermissionDenied("close_token does not match this session")
            await self._session(request.session_id, request.call_id)
        else:
            ctx = await self._caller(ctx, request.session_id, request.call_id)
            record = await self._session(request.session_id, request.call_id)
            await self.auth.check_close(ctx, record)
        final = await self.launcher.close_session(request.session_id)
        response = api_pb.CloseResponse()
        fill_session(response.session, final)
        return response

    async def get(self, request: api_pb.GetRequest, ctx: RequestContext) -> api_pb.GetResponse:
        session_id, call_id = request.session_id, request.call_id
        ctx = await self._caller(ctx, session_id, call_id)
        record = await self._session(session_id, call_id)
        await self.auth.check_view(ctx, record)
        return self._gets.answer(record)

    async def metrics(
        self, request: api_pb.MetricsRequest, ctx: RequestContext
    ) -> api_pb.MetricsResponse:
        ctx = await self._caller(ctx, request.session_id, request.call_id)
        record = await self._session(request.session_id, request.call_id)
        await self.auth.check_view_metrics(ctx, record)
        record, metrics = await self.launcher.get_metrics(record.session_id)
        response = api_pb.MetricsResponse(session_id=record.session_id, call_id=record.call_id)
        if metrics:  # the map's update is Python code even for an empty dict
            response.metrics.update(metrics)
        set_time(response.session_started_at, record.started_at)
        set_time(response.metrics_generated_at, time.time())
        return response

    async def list_sessions(
        self, request: api_pb.ListSessionsRequest, ctx: RequestContext
    ) -> api_pb.ListSessionsResponse:
        """A page of the sessions the caller may view (see ``service.listing``).

        The view check runs on each session of the page: sessions the caller
        may not view are left out, so a page can be short while more remain.
        """
        ctx = await self._caller(ctx, call_id=request.call_id)
        query = query_from_request(request)
        size = page_size(request)
        after = decode_page_token(request.page_token, query)
        page = await self.launcher.list_sessions(query, after, size)
        response = api_pb.ListSessionsResponse()
        for record in page.records:
            try:
                await self.auth.check_view(ctx, record)
            except PermissionDenied:
                continue
            response.sessions.append(session_message(record))
        if page.resume is not None:
            response.next_page_token = encode_page_token(page.resume, query)
        return response

    async def open_events(
        self,
        request: api_pb.StreamEventsRequest,
        ctx: RequestContext,
        live: LiveEventSend | None = None,
    ) -> AsyncIterator[api_pb.StreamEventsResponse]:
        """Check the caller, then answer the stream of events it asked for.

        Events of one session, or of every session the caller may view. All
        checks happen before the stream is returned, so a refused watcher gets
        its error before any response headers. With ``live`` (a transport's
        sender that never blocks), a caught-up watcher's events go to it
        directly and the stream yields only what it declines; a watcher of all
        sessions yields, rather than sends, an event whose permission is not
        yet known (the check may await) and every session's ENDED event.
        """
        ctx = await self._caller(ctx, session_id=request.session_id)
        after = request.after_cursor if request.HasField("after_cursor") else None
        if request.session_id:
            record = await self._session(request.session_id, "")
            await self.auth.check_view(ctx, record)
            if record.ended and not self.launcher.events.holds(record.session_id):
                # Its events are no longer held here (another node's session
                # that ended before this node joined): nothing will come.
                return _no_events()
            return self._session_events(request.session_id, after, request.epoch, live)
        return self._all_events(ctx, after, request.epoch, live)

    async def _session_events(
        self, session_id: str, after: int | None, epoch: str, live: LiveEventSend | None
    ) -> AsyncIterator[api_pb.StreamEventsResponse]:
        log = self.launcher.events
        send: LiveSend | None = None
        if live is not None:

            def send_live(event: SessionEvent) -> bool:
                return live(event_message(event, log.epoch))

            send = send_live

        async for event in log.watch(session_id, after, epoch, send):
            yield event_message(event, log.epoch)

    async def _all_events(
        self, ctx: RequestContext, after: int | None, epoch: str, live: LiveEventSend | None
    ) -> AsyncIterator[api_pb.StreamEventsResponse]:
        allowed: dict[str, bool] = {}
        log = self.launcher.events
        send: LiveSend | None = None
        if live is not None:

            def send_live(event: SessionEvent) -> bool:
                kind = event.kind
                if kind is EventKind.ENDED:
                    return False  # the loop below forgets the session's verdict
                verdict = allowed.get(event.session_id)
                if verdict is None:
                    return False  # judged by the loop below: the check may await
                return not verdict or live(event_message(event, log.epoch))

            send = send_live

        async for event in log.watch(None, after, epoch, send):
            kind = event.kind
            if kind is not EventKind.GAP:
                # A session already judged needs no coroutine (this runs for
                # every event and every watcher); its ENDED event forgets it.
                verdict = allowed.get(event.session_id)
                if verdict is None or kind is EventKind.ENDED:
                    verdict = await self._may_view(ctx, event, allowed)
                if not verdict:
                    continue
            yield event_message(event, log.epoch)

    async def _may_view(
        self, ctx: RequestContext, event: SessionEvent, allowed: dict[str, bool]
    ) -> bool:
        verdict = allowed.get(event.session_id)
        if verdict is None:
            session = event.payload.get("session")
            if session is None:
                try:
                    session = await self.launcher.get_session(event.session_id)
                except SessionNotFound:
                    return False
            try:
                await self.auth.check_view(ctx, session)
                verdict = True
            except PermissionDenied:
                verdict = False
            allowed[event.session_id] = verdict
            if event.kind is EventKind.ENDED:
                allowed.pop(event.session_id, None)
        elif event.kind is EventKind.ENDED:
            # The session's last event: its verdict is no longer needed.
            del allowed[event.session_id]
        return verdict


async def _no_events() -> AsyncIterator[api_pb.StreamEventsResponse]:
    return
    yield  # an async generator that yields nothing
