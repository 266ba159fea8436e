"""``sessions watch``: follow StreamEvents, and resume where the last connection left off.

Every event carries its ``cursor`` and the ``epoch`` of the event log it came
from. When the connection drops (or the server answers UNAVAILABLE, or ends
the stream because it is shutting down), the watch reconnects with backoff
and asks for the events after the last cursor it saw, in that epoch: the
server replays what was missed, without duplicates, or starts with an
EventsGap when it no longer holds them (or restarted: a new epoch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from agentplane.clients.betterproto import StreamEventsRequest, StreamEventsResponse

from .connection import Connection
from .failures import Failure, failure

STREAM_EVENTS = "/agentplane.v1.SessionService/StreamEvents"

#: A lost connection (or a server that went away) mid-watch: reconnect.
_DROPPED = (OSError, StreamTerminatedError, ProtocolError, TimeoutError)


@dataclass
class Position:
    """Where the watch is: the last cursor seen (None: nothing yet) and its epoch."""

    cursor: int | None = None
    epoch: str = ""

    def describe(self) -> str:
        if self.cursor is None:
            return "from now on"
        return f"after #{self.cursor}" + (f" (epoch {self.epoch})" if self.epoch else "")


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts: ``first``, times ``factor``, at most ``most``."""

    first: float = 0.25
    factor: float = 2.0
    most: float = 5.0


async def watch(
    connection: Connection,
    session_id: str,
    position: Position,
    on_event: Callable[[StreamEventsResponse], None],
    on_note: Callable[[str], None],
    backoff: Backoff = Backoff(),
) -> None:
    """Follow the events of ``session_id`` (empty: every session) until they end.

    Returns after a session's stream ended (its ENDED event) and never for
    the feed of every session (cancel it). ``position`` is updated as events
    arrive. A failure the first connection meets, or one that reconnecting
    cannot fix (NOT_FOUND, UNAUTHENTICATED, ...), raises ``Failure``.
    ``on_note`` gets one line for each connection and disconnection.
    """
    connected_once = False
    delay = backoff.first
    target = f"session {session_id}" if session_id else "every session"
    while True:
        channel = connection.channel()
        try:
            async with channel.request(
                STREAM_EVENTS,
                Cardinality.UNARY_STREAM,
                StreamEventsRequest,
                StreamEventsResponse,
                metadata=connection.metadata(),
            ) as stream:
                # The server sends its headers as soon as the watch is
                # subscribed: from here on no event is missed.
                async with asyncio.timeout(connection.timeout):
                    await stream.send_message(
                        StreamEventsRequest(
                            session_id=session_id,
                            after_cursor=position.cursor,
                            epoch=position.epoch,
                        ),
                        end=True,
                    )
                    await stream.recv_initial_metadata()
                verb = "resumed" if connected_once else "watching"
                on_note(f"{verb} {target} on {connection.address}, {position.describe()}")
                connected_once = True
                delay = backoff.first
                while (event := await stream.recv_message()) is not None:
                    if (
                        position.cursor is not None
                        and event.epoch == position.epoch
                        and event.cursor <= position.cursor
                    ):
                        continue  # seen already (a server never sends it; cheap to guard)
                    position.cursor, position.epoch = event.cursor, event.epoch
                    on_event(event)
            if session_id:
                return  # the session ended (or its events are no longer held)
            why = "the server ended the stream (shutting down?)"
        except GRPCError as error:
            if error.status is not Status.UNAVAILABLE or not connected_once:
                raise _failure(error, connection) from None
            why = f"UNAVAILABLE: {error.message}"
        except _DROPPED as error:
            if not connected_once:
                raise _failure(error, connection) from None
            why = str(error) or type(error).__name__
        finally:
            channel.close()
        on_note(f"connection lost ({why}); reconnecting in {delay:g} s, {position.describe()}")
        await asyncio.sleep(delay)
        delay = min(delay * backoff.factor, backoff.most)


def _failure(error: BaseException, connection: Connection) -> Failure:
    found = failure(error, connection.address)
    if found is None:  # pragma: no cover - _DROPPED and GRPCError always map
        return Failure(Status.UNKNOWN, str(error))
    return found


__all__ = ["Backoff", "Position", "watch"]
