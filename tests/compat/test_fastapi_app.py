"""``runner.fast_api`` is a FastAPI app: the docs' decorators, middleware and routers work."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.middleware.gzip import GZipMiddleware

from agentplane.server import Runner, ServeOptions
from tests.support import GatewayAgents, serving


async def test_the_docs_customizations_of_runner_fast_api(agents: GatewayAgents) -> None:
    runner = Runner(agents.launcher(), ServeOptions(api_token=None, gc_freeze=False))
    assert isinstance(runner.fast_api, FastAPI)

    # Adding a custom endpoint
    @runner.fast_api.get("/custom")
    def custom_endpoint() -> dict[str, str]:
        return {"message": "Custom endpoint"}

    # Add custom middleware
    runner.fast_api.add_middleware(GZipMiddleware, minimum_size=1000)

    router = APIRouter(prefix="/team")

    @router.get("/members/{name}")
    async def member(name: str, verbose: bool = False) -> dict[str, object]:
        return {"name": name, "verbose": verbose}

    runner.fast_api.include_router(router)

    async with serving(runner) as served, httpx.AsyncClient(base_url=served.http_url) as http:
        assert served.runner.fast_api is runner.fast_api
        custom = await http.get("/custom")
        assert (custom.status_code, custom.json()) == (200, {"message": "Custom endpoint"})
        routed = await http.get("/team/members/ann", params={"verbose": "true"})
        assert routed.json() == {"name": "ann", "verbose": True}
        invalid = await http.get("/team/members/ann", params={"verbose": "perhaps"})
        assert invalid.status_code == 422  # FastAPI validates its own routes

        # The middleware wraps every route, the gateway's included.
        raw = await http.get("/openapi.json", headers={"accept-encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        assert "/sessions" in raw.json()["paths"]
        small = await http.get("/health", headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in small.headers  # under minimum_size

        started = await http.post("/sessions", json={"call_id": "c"})
        assert started.status_code == 201
        sid = started.json()["session_id"]
        got = await http.get(f"/sessions/{sid}", headers={"accept-encoding": "gzip"})
        assert got.json()["session_id"] == sid
        # Routing errors keep the gateway's one shape.
        missing = await http.get("/nowhere")
        assert (missing.status_code, missing.json()["code"]) == (404, 5)
        wrong = await http.put("/custom")
        assert (wrong.status_code, wrong.json()["code"]) == (405, 12)
        assert "GET" in wrong.headers["allow"]


async def test_a_users_own_fastapi_app_is_served_as_it_is(agents: GatewayAgents) -> None:
    app = FastAPI(title="My Agent Server")

    @app.get("/custom")
    async def custom_endpoint() -> dict[str, str]:
        return {"status": "ok"}

    runner = Runner(agents.launcher(), ServeOptions(api_token=None, gc_freeze=False, fast_api=app))
    assert runner.fast_api is app
    async with serving(runner) as served, httpx.AsyncClient(base_url=served.http_url) as http:
        assert (await http.get("/custom")).json() == {"status": "ok"}
        assert (await http.get("/openapi.json")).json()["info"]["title"] == "My Agent Server"
        # As the reference documents: no session routes unless the user mounts them.
        assert (await http.post("/sessions", json={"call_id": "c"})).status_code == 404


async def test_an_untouched_runner_serves_the_same_routes_without_fastapi(
    agents: GatewayAgents,
) -> None:
    runner = Runner(agents.launcher(), ServeOptions(api_token=None, gc_freeze=False))
    async with serving(runner) as served, httpx.AsyncClient(base_url=served.http_url) as http:
        assert type(runner.fast_api).__name__ == "Starlette"
        assert (await http.post("/sessions", json={"call_id": "c"})).status_code == 201
        assert (await http.get("/nowhere")).json()["code"] == 5
