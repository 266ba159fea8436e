"""Input checks for Start: every bad field is reported, none is guessed at."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from .agent import Keywords
from .errors import FieldViolation, InvalidArgument

CALL_ID_MAX = 128
CALL_TYPE_MAX = 64
IDEMPOTENCY_KEY_MAX = 128
METADATA_MAX_BYTES = 16 * 1024
METADATA_KEY_MAX = 64

_ID_CHARS = re.compile(r"[A-Za-z0-9_.:\-]+")
_METADATA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


def _check_identifier(name: str, value: str, max_len: int) -> FieldViolation | None:
    if not value:
        return FieldViolation(name, "must not be empty")
    if len(value) > max_len:
        return FieldViolation(name, f"must be at most {max_len} characters, got {len(value)}")
    if not _ID_CHARS.fullmatch(value):
        return FieldViolation(name, "may contain only letters, digits and '_', '-', '.', ':'")
    return None


def _non_finite(value: Any, depth: int = 0) -> float | None:
    """The first NaN or infinity inside ``value`` (nested lists and dicts), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    if depth > 64:  # protobuf's own nesting limit is lower; never recurse unbounded
        return None
    items: Any = ()
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    for item in items:
        found = _non_finite(item, depth + 1)
        if found is not None:
            return found
    return None


def validate_start(
    call_id: str,
    call_type: str,
    metadata: dict[str, Any],
    idempotency_key: str,
    keywords: Keywords | None = None,
) -> None:
    """Raise InvalidArgument naming every bad field of a Start request.

    ``keywords``: what ``create_agent`` takes; metadata it would not take (an
    unknown key, a required one missing) is a bad field, not a failed start.
    """
    violations = [
        v
        for v in (
            _check_identifier("call_id", call_id, CALL_ID_MAX),
            _check_identifier("call_type", call_type, CALL_TYPE_MAX),
        )
        if v is not None
    ]
    if idempotency_key:
        if len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
            violations.append(
                FieldViolation(
                    "idempotency_key", f"must be at most {IDEMPOTENCY_KEY_MAX} characters"
                )
            )
        elif not _PRINTABLE_ASCII.fullmatch(idempotency_key):
            violations.append(
                FieldViolation("idempotency_key", "must be printable ASCII without spaces")
            )
    for key in metadata:
        if (
            not isinstance(key, str)
            or len(key) > METADATA_KEY_MAX
            or not _METADATA_KEY.fullmatch(key)
        ):
            violations.append(
                FieldViolation(
                    f"metadata.{str(key)[:METADATA_KEY_MAX]}",
                    "metadata keys become keyword arguments of create_agent: use a Python "
                    f"identifier of at most {METADATA_KEY_MAX} characters",
                )
            )
        else:
            bad = _non_finite(metadata[key])
            if bad is not None:
                violations.append(
                    FieldViolation(f"metadata.{key}", f"numbers must be finite, got {bad!r}")
                )
    if keywords is not None:
        violations.extend(_keyword_violations(metadata, keywords))
    # Empty metadata ("{}") is never too large: no encoding to measure it.
    size = (
        len(json.dumps(metadata, separators=(",", ":"), default=str, skipkeys=True).encode())
        if metadata
        else 2
    )
    if size > METADATA_MAX_BYTES:
        violations.append(
            FieldViolation("metadata", f"must be at most {METADATA_MAX_BYTES} bytes, got {size}")
        )
    if violations:
        raise InvalidArgument(violations)


def _keyword_violations(metadata: dict[str, Any], keywords: Keywords) -> list[FieldViolation]:
    # Keys that are no identifier have their violation already.
    keys = [
        key
        for key in metadata
        if isinstance(key, str) and len(key) <= METADATA_KEY_MAX and _METADATA_KEY.fullmatch(key)
    ]
    unknown = keywords.unknown(keys)
    violations: list[FieldViolation] = []
    if unknown:
        takes = sorted(keywords.names or ())
        accepted = f"it takes {', '.join(takes)}" if takes else "it takes no keyword arguments"
        violations.extend(
            FieldViolation(
                f"metadata.{key}",
                f"create_agent takes no keyword argument {key!r} ({accepted}; metadata keys "
                "become its keyword arguments)",
            )
            for key in unknown
        )
    violations.extend(
        FieldViolation(
            f"metadata.{name}",
            f"required: create_agent has a keyword argument {name!r} without a default",
        )
        for name in keywords.missing(keys)
    )
    return violations


def validate_session_id(session_id: str) -> None:
    """Reject an empty or absurd session id before any lookup."""
    if not session_id:
        raise InvalidArgument([FieldViolation("session_id", "must not be empty")])
    if len(session_id) > CALL_ID_MAX:
        raise InvalidArgument(
            [FieldViolation("session_id", f"must be at most {CALL_ID_MAX} characters")]
        )


def call_id_violation(field: str, call_id: str) -> FieldViolation | None:
    """What is wrong with ``call_id`` as a call id (None: nothing)."""
    return _check_identifier(field, call_id, CALL_ID_MAX)


def new_session_id() -> str:
    """A random (version 4) UUID in its canonical form, as ``str(uuid.uuid4())``.

    From the same 16 bytes of os.urandom with the same 6 fixed bits, without
    the UUID object and its formatting: less than half the cost, every Start.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant RFC 4122
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
