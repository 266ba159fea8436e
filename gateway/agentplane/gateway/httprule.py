"""``google.api.http`` path templates: parsed once, matched per request.

The grammar is that of ``google/api/http.proto``::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

``PathTemplate.parse`` refuses a bad template with ``TemplateError`` (the
gateway then refuses to start). ``match`` works on the *raw* (still
percent-encoded) request path, so an encoded ``/`` inside a segment never
splits it: a single-segment variable is fully decoded, a multi-segment one
(``{name=a/**}``) keeps ``%2F`` encoded, as the HttpRule spec asks.

Example::

    >>> t = PathTemplate.parse("/calls/{call_id}/sessions/{session_id}")
    >>> t.match("/calls/c%3A1/sessions/s1")
    {'call_id': 'c:1', 'session_id': 's1'}
    >>> t
    PathTemplate('/calls/{call_id}/sessions/{session_id}')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# RFC 3986 pchar without "/", "{", "}", ":" (":" only ends a segment before a verb).
_LITERAL = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=@%]+")

WILD = "*"
DEEP_WILD = "**"


class TemplateError(ValueError):
    """A ``google.api.http`` path template that does not follow the grammar."""


@dataclass(frozen=True, slots=True)
class Variable:
    """A captured field: segments ``start`` up to ``end`` (None: to the end)."""

    field_path: str
    start: int
    end: int | None
    # More than one segment ("{name=a/*}", "**"): its "%2F" stays encoded.
    multi_segment: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        multi = self.end is None or self.end - self.start != 1
        object.__setattr__(self, "multi_segment", multi)


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """A compiled template: segment patterns (literals, ``*``, ``**``) and variables."""

    text: str
    segments: tuple[str, ...]
    variables: tuple[Variable, ...]
    verb: str | None
    # Derived once from the above, read on every request: how many segments a
    # path has (at least, with "**"), which must be non-empty, which literal.
    _length: int = field(init=False, repr=False, compare=False)
    _open_ended: bool = field(init=False, repr=False, compare=False)
    _wilds: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _literals: tuple[tuple[int, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        open_ended = bool(self.segments) and self.segments[-1] == DEEP_WILD
        head = self.segments[:-1] if open_ended else self.segments
        derived = {
            "_length": len(head),
            "_open_ended": open_ended,
            "_wilds": tuple(i for i, s in enumerate(head) if s == WILD),
            "_literals": tuple((i, s) for i, s in enumerate(head) if s != WILD),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        return _Parser(text).template()

    def __repr__(self) -> str:
        return f"PathTemplate({self.text!r})"

    @property
    def field_paths(self) -> tuple[str, ...]:
        return tuple(v.field_path for v in self.variables)

    def match(self, raw_path: str) -> dict[str, str] | None:
        """The variables of ``raw_path`` (percent-encoded), or None if it does not match."""
        if not raw_path.startswith("/"):
            return None
        return self.match_segments(raw_path[1:].split("/"))

    def match_segments(self, parts: list[str]) -> dict[str, str] | None:
        """``match`` for a path already split at "/" (after its leading "/"); ``parts``
        is not changed, so one split serves every template a request is tried on."""
        if self.verb is not None:
            head, sep, verb = parts[-1].rpartition(":")
            if not sep or unquote(verb) != self.verb:
                return None
            parts = [*parts[:-1], head]
        # "**" is always last (the parser enforces it): it takes the rest.
        if len(parts) != self._length and not (self._open_ended and len(parts) > self._length):
            return None
        for i in self._wilds:
            if not parts[i]:
                return None
        for i, literal in self._literals:
            segment = parts[i]
            # The literal is stored decoded: a raw segment equal to it matches
            # unless it holds an escape (then only its decoded form counts).
            if (segment != literal or "%" in segment) and unquote(segment) != literal:
                return None
        values: dict[str, str] = {}
        for var in self.variables:
            if var.multi_segment:
                chosen = parts[var.start :] if var.end is None else parts[var.start : var.end]
                # Reserved expansion: an encoded "/" stays encoded.
                values[var.field_path] = "/".join(_unquote_keep_slash(p) for p in chosen)
            else:
                segment = parts[var.start]
                values[var.field_path] = unquote(segment) if "%" in segment else segment
        return values


def _unquote_keep_slash(segment: str) -> str:
    return unquote(re.sub("%2[Ff]", "%252F", segment))


class _Parser:
    """A recursive-descent parser over the template text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.segments: list[str] = []
        self.variables: list[Variable] = []

    def fail(self, why: str) -> TemplateError:
        return TemplateError(f"bad path template {self.text!r} at {self.pos}: {why}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def template(self) -> PathTemplate:
        self.expect("/")
        self.segments_rule(inside_variable=False)
        verb = None
        if self.peek() == ":":
            self.pos += 1
            verb = self.literal()
        if self.pos != len(self.text):
            raise self.fail("unexpected character")
        if self.segments.count(DEEP_WILD) > 1 or (
            DEEP_WILD in self.segments and self.segments[-1] != DEEP_WILD
        ):
            raise self.fail("'**' may only be the last segment")
        names = [v.field_path for v in self.variables]
        if len(set(names)) != len(names):
            raise self.fail("a field is bound twice")
        return PathTemplate(self.text, tuple(self.segments), tuple(self.variables), verb)

    def segments_rule(self, *, inside_variable: bool) -> None:
        self.segment(inside_variable=inside_variable)
        while self.peek() == "/":
            self.pos += 1
            self.segment(inside_variable=inside_variable)

    def segment(self, *, inside_variable: bool) -> None:
        if self.text.startswith(DEEP_WILD, self.pos):
            self.pos += 2
            self.segments.append(DEEP_WILD)
        elif self.peek() == "*":
            self.pos += 1
            self.segments.append(WILD)
        elif self.peek() == "{":
            if inside_variable:
                raise self.fail("variables cannot nest")
            self.variable()
        else:
            self.segments.append(unquote(self.literal()))

    def variable(self) -> None:
        self.expect("{")
        match = _FIELD_PATH.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a field path")
        self.pos = match.end()
        start = len(self.segments)
        if self.peek() == "=":
            self.pos += 1
            self.segments_rule(inside_variable=True)
        else:
            self.segments.append(WILD)
        self.expect("}")
        end: int | None = len(self.segments)
        if DEEP_WILD in self.segments[start:]:
            end = None
        self.variables.append(Variable(match.group(0), start, end))

    def literal(self) -> str:
        match = _LITERAL.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a literal segment")
        self.pos = match.end()
        return match.group(0)
