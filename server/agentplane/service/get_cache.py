"""Get's answer per session, built once for each state the session is in.

Dashboards and agents' own backends poll Get of the same session many times
between its changes (a session changes state three or four times in its
life). Building the ``GetResponse`` from the record, and the gateway rendering
it as JSON, were about a fifth of a Get's CPU in process (issue 16). Here the
answer is kept with the record it was built from: a Get whose record equals
that one (every field, compared as the dataclass compares) gets the same
message object back, and the HTTP gateway, which remembers what it rendered
by message identity (``RenderMemo``), sends the same bytes without rendering
again. Any change to the record (state, end, anything) fails the comparison
and builds a new answer, so nothing here has to be told of changes.

The answers handed out are shared, so nobody may change them: the gRPC
service only serializes them and the gateway only renders them. At most
``size`` sessions are kept, the oldest answer going first; a server reading
more sessions than that in turn (the held-sessions bench) pays one insert
and one eviction per Get, never a pause to drop them all at once.
"""

from __future__ import annotations

from collections import OrderedDict

from agentplane.clients.grpcio import session_service_pb2 as api_pb
from agentplane.core import SessionRecord

from .convert import fill_session

# Sessions whose answer is kept: a dashboard's worth of polled sessions, and
# small, since a Get of a session not kept (a new one) pays for its insert.
DEFAULT_SIZE = 256


class GetAnswers:
    """``GetResponse`` of a record, the same object while the record is unchanged."""

    __slots__ = ("_entries", "size")

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._entries: OrderedDict[str, tuple[SessionRecord, api_pb.GetResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def answer(self, record: SessionRecord) -> api_pb.GetResponse:
        """The answer to a Get that found ``record`` (a snapshot: it is kept as it is)."""
        entry = self._entries.get(record.session_id)
        if entry is not None and entry[0] == record:
            return entry[1]
        response = api_pb.GetResponse()
        fill_session(response.session, record)
        entries = self._entries
        entries[record.session_id] = (record, response)
        if len(entries) > self.size:
            entries.popitem(last=False)
        return response
