# Generated from proto/ by scripts/generate_clients.py: do not edit. Regenerate with ./dev generate.
import datetime

from . import session_pb2 as _session_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartRequest(_message.Message):
    __slots__ = ("call_id", "call_type", "metadata", "idempotency_key")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    call_type: str
    metadata: _struct_pb2.Struct
    idempotency_key: str
    def __init__(self, call_id: _Optional[str] = ..., call_type: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("session_id", "call_id", "session_started_at", "close_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    call_id: str
    session_started_at: _timestamp_pb2.Timestamp
    close_token: str
    def __init__(self, session_id: _Optional[str] = ..., call_id: _Optional[str] = ..., session_started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_token: _Optional[str] = ...) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ("session_id", "call_id", "close_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    call_id: str
    close_token: str
    def __init__(self, session_id: _Optional[str] = ..., call_id: _Optional[str] = ..., close_token: _Optional[str] = ...) -> None: ...

class CloseResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("session_id", "call_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    call_id: str
    def __init__(self, session_id: _Optional[str] = ..., call_id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class MetricsRequest(_message.Message):
    __slots__ = ("session_id", "call_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    call_id: str
    def __init__(self, session_id: _Optional[str] = ..., call_id: _Optional[str] = ...) -> None: ...

class MetricsResponse(_message.Message):
    __slots__ = ("session_id", "call_id", "session_started_at", "metrics_generated_at", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    METRICS_GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    call_id: str
    session_started_at: _timestamp_pb2.Timestamp
    metrics_generated_at: _timestamp_pb2.Timestamp
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, session_id: _Optional[str] = ..., call_id: _Optional[str] = ..., session_started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metrics_generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "call_id", "states", "end_reasons", "created_by", "started_after", "started_before", "ended_after", "ended_before", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    END_REASONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AFTER_FIELD_NUMBER: _ClassVar[int]
    STARTED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ENDED_AFTER_FIELD_NUMBER: _ClassVar[int]
    ENDED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    call_id: str
    states: _containers.RepeatedScalarFieldContainer[_session_pb2.SessionState]
    end_reasons: _containers.RepeatedScalarFieldContainer[_session_pb2.EndReason]
    created_by: str
    started_after: _timestamp_pb2.Timestamp
    started_before: _timestamp_pb2.Timestamp
    ended_after: _timestamp_pb2.Timestamp
    ended_before: _timestamp_pb2.Timestamp
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., call_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_session_pb2.SessionState, str]]] = ..., end_reasons: _Optional[_Iterable[_Union[_session_pb2.EndReason, str]]] = ..., created_by: _Optional[str] = ..., started_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_session_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_session_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("session_id", "after_cursor", "epoch")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_cursor: int
    epoch: str
    def __init__(self, session_id: _Optional[str] = ..., after_cursor: _Optional[int] = ..., epoch: _Optional[str] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("cursor", "session_id", "call_id", "time", "epoch", "started", "state_changed", "metrics_updated", "ended", "agent_event", "gap")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    METRICS_UPDATED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    AGENT_EVENT_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    session_id: str
    call_id: str
    time: _timestamp_pb2.Timestamp
    epoch: str
    started: _session_pb2.SessionStarted
    state_changed: _session_pb2.StateChanged
    metrics_updated: _session_pb2.MetricsUpdated
    ended: _session_pb2.SessionEnded
    agent_event: _session_pb2.AgentEvent
    gap: _session_pb2.EventsGap
    def __init__(self, cursor: _Optional[int] = ..., session_id: _Optional[str] = ..., call_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., epoch: _Optional[str] = ..., started: _Optional[_Union[_session_pb2.SessionStarted, _Mapping]] = ..., state_changed: _Optional[_Union[_session_pb2.StateChanged, _Mapping]] = ..., metrics_updated: _Optional[_Union[_session_pb2.MetricsUpdated, _Mapping]] = ..., ended: _Optional[_Union[_session_pb2.SessionEnded, _Mapping]] = ..., agent_event: _Optional[_Union[_session_pb2.AgentEvent, _Mapping]] = ..., gap: _Optional[_Union[_session_pb2.EventsGap, _Mapping]] = ...) -> None: ...
