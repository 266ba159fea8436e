"""Request bodies: read with a size bound, decoded by content type.

Two kinds of routes. A JSON route takes ``application/json`` (and
``*/*+json``) only: a typeless, ``text/plain`` or form body is refused with
415, so a page on another origin cannot send one without a CORS preflight
(those three are the types a cross-origin ``fetch`` may send unasked). A
beacon route (``create_app(beacon_rpcs=...)``) takes what
``navigator.sendBeacon`` sends: JSON, ``text/plain`` and typeless (read as
JSON), ``application/x-www-form-urlencoded`` and ``multipart/form-data``
(``FormData``), the last with tight bounds: at most ``MAX_FORM_PARTS`` flat
parts (no nested multipart), parsed in one linear pass.

``decode_body`` refuses what it cannot read (415 for another type, 400 for
a malformed body). A beacon cannot see the answer and is never retried, so
on a beacon route the routes use ``decode_beacon``: a body it cannot read
(garbage, a Blob of another type, a JSON string) counts as no body at all.
Only the size limits still refuse (413).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from grpclib.const import Status
from starlette.types import Receive

from .errors import RpcError

DEFAULT_MAX_BODY_BYTES = 1 << 20
# A beacon's form has a field or two; these bound what a hostile one costs.
MAX_FORM_PARTS = 32
MAX_PART_HEADERS = 8


@dataclass(frozen=True, slots=True)
class DecodedBody:
    """A request body: JSON, or form pairs, or nothing."""

    json: Any = None
    form: Sequence[tuple[str, str]] = ()
    present: bool = False


# What a request without a body carries (one object: a frozen dataclass costs a setattr a field).
NO_BODY = DecodedBody()


async def read_body(receive: Receive, limit: int, declared_length: int | None) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    if declared_length is not None and declared_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RpcError(Status.CANCELLED, "client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> RpcError:
    return RpcError(Status.INVALID_ARGUMENT, f"request body exceeds {limit} bytes", http_status=413)


def decode_body(content_type: str | None, raw: bytes, *, beacon: bool = False) -> DecodedBody:
    """Decode ``raw`` by its content type; an empty body is no body at all.

    ``beacon``: the route takes what ``navigator.sendBeacon`` sends, not JSON only.
    """
    if not raw.strip():
        return NO_BODY
    mime, params = parse_content_type(content_type or "")
    decoder = (BEACON_DECODERS if beacon else JSON_DECODERS).get(mime)
    if decoder is None and mime.endswith("+json"):
        decoder = _json
    if decoder is None:
        accepted = (
            "application/json, text/plain, application/x-www-form-urlencoded or multipart/form-data"
            if beacon
            else "application/json"
        )
        shown = f"Content-Type {mime!r}" if mime else "a body without Content-Type"
        raise RpcError(
            Status.INVALID_ARGUMENT,
            f"unsupported {shown}: send {accepted}",
            http_status=415,
        )
    return decoder(raw, content_type or "", params)


def decode_beacon(content_type: str | None, raw: bytes) -> DecodedBody:
    """``raw`` as a beacon route reads it: what can be read, else no body; never a 400 or 415.

    A known beacon type is decoded as ``decode_body`` does; any other type is
    tried as JSON. Whatever fails to decode becomes an empty body. Bodies over
    a limit (``MAX_FORM_PARTS``; the byte limit is ``read_body``'s) stay 413.
    """
    if not raw.strip():
        return NO_BODY
    mime, params = parse_content_type(content_type or "")
    decoder = BEACON_DECODERS.get(mime, _json)
    try:
        return decoder(raw, content_type or "", params)
    except RpcError as error:
        if error.http_status == 413:
            raise
        return NO_BODY


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    mime, *rest = value.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, _, val = item.strip().partition("=")
        params[key.strip().lower()] = val.strip().strip('"')
    return mime.strip().lower(), params


def _text(raw: bytes, params: dict[str, str]) -> str:
    charset = params.get("charset", "utf-8")
    try:
        return raw.decode(charset)
    except LookupError:
        raise RpcError(
            Status.INVALID_ARGUMENT, f"unsupported charset {charset!r}", http_status=415
        ) from None
    except UnicodeDecodeError as error:
        raise RpcError.invalid_argument(f"request body is not valid {charset}: {error}") from None


def _json(raw: bytes, content_type: str, params: dict[str, str]) -> DecodedBody:
    text = _text(raw, params)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RpcError.invalid_argument(f"malformed JSON body: {error}") from None
    except RecursionError:
        raise RpcError.invalid_argument("JSON body is nested too deeply") from None
    return DecodedBody(json=value, present=True)


def _urlencoded(raw: bytes, content_type: str, params: dict[str, str]) -> DecodedBody:
    text = _text(raw, params)
    if text.lstrip().startswith("{"):
        # `curl -d '{...}'` labels JSON as a form; no form of ours starts with
        # "{" (keys are field names), so read it as the JSON it is.
        return _json(raw, content_type, params)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError as error:
        raise RpcError.invalid_argument(f"malformed form body: {error}") from None
    return DecodedBody(form=pairs, present=True)


def _multipart(raw: bytes, content_type: str, params: dict[str, str]) -> DecodedBody:
    """Flat ``multipart/form-data`` text fields, bounded and in one linear pass."""
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 70:  # RFC 2046: 1 to 70 characters
        raise RpcError.invalid_argument("multipart/form-data body without a valid boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    if raw.count(delimiter) > MAX_FORM_PARTS + 1:
        raise RpcError(
            Status.INVALID_ARGUMENT,
            f"multipart/form-data body has more than {MAX_FORM_PARTS} parts",
            http_status=413,
        )
    segments = raw.split(delimiter)
    pairs: list[tuple[str, str]] = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            return DecodedBody(form=pairs, present=True)
        pairs.append(_form_part(segment))
    raise RpcError.invalid_argument("malformed multipart/form-data body: no closing boundary")


def _form_part(segment: bytes) -> tuple[str, str]:
    if not segment.startswith(b"\r\n"):
        raise RpcError.invalid_argument("malformed multipart/form-data body")
    head, sep, content = segment[2:].partition(b"\r\n\r\n")
    if not sep:
        if not segment[2:].startswith(b"\r\n"):
            raise RpcError.invalid_argument("malformed multipart/form-data part")
        head, content = b"", segment[4:]
    if content.endswith(b"\r\n"):
        content = content[:-2]
    lines = head.split(b"\r\n") if head else []
    if len(lines) > MAX_PART_HEADERS:
        raise RpcError.invalid_argument(
            f"multipart/form-data part has more than {MAX_PART_HEADERS} headers"
        )
    name: str | None = None
    charset = "utf-8"
    for line in lines:
        key, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise RpcError.invalid_argument("malformed multipart/form-data part header")
        key = key.strip().lower()
        kind, part_params = parse_content_type(value)
        if key == "content-disposition" and kind == "form-data":
            name = part_params.get("name")
        elif key == "content-type":
            if kind.startswith("multipart/"):
                raise RpcError.invalid_argument("nested multipart bodies are not accepted")
            charset = part_params.get("charset", charset)
    if name is None:
        raise RpcError.invalid_argument("multipart/form-data part without a name")
    try:
        return name, content.decode(charset)
    except (LookupError, UnicodeDecodeError):
        raise RpcError.invalid_argument(f"form field {name!r} is not text") from None


Decoder = Callable[[bytes, str, dict[str, str]], DecodedBody]

JSON_DECODERS: dict[str, Decoder] = {"application/json": _json}

BEACON_DECODERS: dict[str, Decoder] = {
    "": _json,
    "application/json": _json,
    "text/plain": _json,
    "application/x-www-form-urlencoded": _urlencoded,
    "multipart/form-data": _multipart,
}
