"""/openapi.json is derived from the bindings and comments; /docs serves Swagger UI."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from agentplane.gateway import service_bindings
from agentplane.gateway.openapi import _openapi_path
from agentplane.http.app import session_service

from .support import Agents, Deployment, deploy


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


async def test_the_document_covers_every_binding_with_its_comments(gw: Deployment) -> None:
    response = await gw.http.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.0")
    operations = []
    for binding in service_bindings([session_service()]):
        operation = doc["paths"][_openapi_path(binding)][binding.http_method.lower()]
        operations.append(operation)
        assert operation["summary"], binding  # from the proto's comment
        path_params = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert path_params == list(binding.template.field_paths)
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    start = doc["paths"]["/sessions"]["post"]
    assert "201" in start["responses"]
    assert set(start["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "call_id", "call_type", "metadata", "idempotency_key",
    }  # fmt: skip
    scoped = doc["paths"]["/calls/{call_id}/sessions"]["post"]["requestBody"]
    assert "call_id" not in scoped["content"]["application/json"]["schema"]["properties"]
    events = doc["paths"]["/sessions/{session_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert any(p["name"] == "Last-Event-ID" for p in events["parameters"])
    session = doc["components"]["schemas"]["agentplane.v1.Session"]
    assert session["properties"]["state"]["enum"][0] == "SESSION_STATE_UNSPECIFIED"
    assert session["properties"]["session_started_at"]["format"] == "date-time"
    cursor = doc["components"]["schemas"]["agentplane.v1.StreamEventsResponse"]["properties"]
    assert cursor["cursor"]["type"] == "string"  # protojson: 64-bit as strings
    for ref in _refs(doc):
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


async def test_list_sessions_routes_document_their_query_and_page(gw: Deployment) -> None:
    doc = (await gw.http.get("/openapi.json")).json()
    flat = doc["paths"]["/sessions"]["get"]
    scoped = doc["paths"]["/calls/{call_id}/sessions"]["get"]
    assert flat["summary"].startswith("Lists the sessions the caller may view")
    assert "AIP-158" in flat["description"]
    filters = {
        "page_size", "page_token", "states", "end_reasons", "created_by", "started_after",
        "started_before", "ended_after", "ended_before", "order_by",
    }  # fmt: skip
    for operation, path_params in ((flat, []), (scoped, ["call_id"])):
        params = {p["name"]: p for p in operation["parameters"]}
        assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == path_params
        query = {name for name, p in params.items() if p["in"] == "query"}
        assert query == filters | ({"call_id"} if not path_params else set())
        assert all(p["required"] is False for p in params.values() if p["in"] == "query")
        assert params["page_size"]["schema"] == {"type": "integer", "format": "int32"}
        assert "1000" in params["page_size"]["description"]
        for name, enum in (
            ("states", "SESSION_STATE_RUNNING"),
            ("end_reasons", "END_REASON_ERROR"),
        ):
            repeated = params[name]
            assert repeated["schema"]["type"] == "array"
            assert repeated["schema"]["items"]["type"] == "string"
            assert enum in repeated["schema"]["items"]["enum"]
            assert (repeated["style"], repeated["explode"]) == ("form", True)  # ?states=A&states=B
        for name in ("started_after", "started_before", "ended_after", "ended_before"):
            assert params[name]["schema"] == {"type": "string", "format": "date-time"}
            assert params[name]["description"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/agentplane.v1.ListSessionsResponse"}
    page = doc["components"]["schemas"]["agentplane.v1.ListSessionsResponse"]
    assert page["properties"]["sessions"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/agentplane.v1.Session"},
        "description": "The sessions of this page, in the requested order.",
    }
    assert page["properties"]["next_page_token"]["type"] == "string"
    assert flat["operationId"] != scoped["operationId"]


async def test_docs_page_is_served_without_a_cdn(gw: Deployment) -> None:
    page = await gw.http.get("/docs")
    assert page.status_code == 200
    assert "/docs/static/swagger-ui-bundle.js" in page.text
    assert '"/openapi.json"' in page.text
    script = await gw.http.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


async def test_schemathesis_finds_no_server_error(agents: Agents, tmp_path: Path) -> None:
    """Generated requests for every unary operation: no 5xx, ever.

    The event streams are left out: they stay open by design (tested above).
    """
    st = os.path.join(os.path.dirname(sys.executable), "st")
    async with deploy("embedded", agents.launcher(max_concurrent_sessions=10_000)) as gw:
        proc = await asyncio.create_subprocess_exec(
            st, "run", f"{gw.url}/openapi.json",
            "--checks", "not_a_server_error",
            "--max-examples", "15",
            "--exclude-path-regex", "events$",
            "--seed", "1",
            "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,  # its cache folder goes there, not into the checkout
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
        report = out.decode()
        assert proc.returncode == 0, report[-3000:]
        assert "Server error" not in report
