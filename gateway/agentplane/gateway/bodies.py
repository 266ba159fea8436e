"""Request bodies: read with a size bound, decoded by content type.

A registry keyed by MIME type picks the decoder. JSON covers what browsers
send a JSON body as: ``application/json`` (and ``*/*+json``), ``text/plain``
(``navigator.sendBeacon`` with a string) and no type at all (a typeless
Blob). Forms (``URLSearchParams`` and ``FormData`` beacons) give field pairs.
Anything else is refused with 415 rather than guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from grpclib.const import Status
from starlette.types import Receive

from .errors import RpcError

DEFAULT_MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class DecodedBody:
    """A request body: JSON, or form pairs, or nothing."""

    json: Any = None
    form: list[tuple[str, str]] = field(default_factory=list)
    present: bool = False


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


def decode_body(content_type: str | None, raw: bytes) -> DecodedBody:
    """Decode ``raw`` by its content type; an empty body is no body at all."""
    if not raw.strip():
        return DecodedBody()
    mime, params = parse_content_type(content_type or "")
    decoder = _decoder_for(mime)
    if decoder is None:
        raise RpcError(
            Status.INVALID_ARGUMENT,
            f"unsupported Content-Type {mime!r}: send application/json, text/plain, "
            "application/x-www-form-urlencoded or multipart/form-data",
            http_status=415,
        )
    return decoder(raw, content_type or "", params)


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
    if not params.get("boundary"):
        raise RpcError.invalid_argument("multipart/form-data body without a boundary")
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise RpcError.invalid_argument("malformed multipart/form-data body")
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise RpcError.invalid_argument("multipart/form-data part without a name")
        payload = part.get_payload(decode=True)
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset) if isinstance(payload, bytes) else ""
        except (LookupError, UnicodeDecodeError):
            raise RpcError.invalid_argument(f"form field {name!r} is not text") from None
        pairs.append((name, text))
    return DecodedBody(form=pairs, present=True)


Decoder = Callable[[bytes, str, dict[str, str]], DecodedBody]

BODY_DECODERS: dict[str, Decoder] = {
    "": _json,
    "application/json": _json,
    "text/plain": _json,
    "application/x-www-form-urlencoded": _urlencoded,
    "multipart/form-data": _multipart,
}


def _decoder_for(mime: str) -> Decoder | None:
    if mime in BODY_DECODERS:
        return BODY_DECODERS[mime]
    if mime.endswith("+json"):
        return _json
    return None
