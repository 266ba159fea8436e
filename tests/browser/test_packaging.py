"""The demo page and the browser module are package data: found installed, served by demo_routes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import httpx
from starlette.applications import Starlette

from agentplane.demo.page import FILES, demo_routes, read_asset

from .support import REPO

BROWSER_CLIENT = REPO / "clients" / "browser"


def test_files_are_package_resources() -> None:
    package = resources.files("agentplane.demo")
    for filename, _ in FILES.values():
        assert package.joinpath(filename).is_file(), filename
    # server/agentplane/demo/ links the module and its types from clients/browser/, the one source.
    for name in ("agentplane.js", "agentplane.d.ts"):
        assert read_asset(name) == (BROWSER_CLIENT / name).read_bytes()


def test_a_build_ships_the_files(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """The wheel carries them (links resolved) as package data of agentplane.demo."""
    build = tmp_path / "lib"
    wheel.extractall(build)
    built = build / "agentplane" / "demo"
    for filename, _ in FILES.values():
        path = built / filename
        assert path.is_file() and not path.is_symlink(), filename
        assert path.read_bytes() == read_asset(filename)
    # And importlib.resources finds them there when that copy is the one imported.
    probe = (
        "from importlib import resources; import agentplane.demo.page as demo;"
        "print(demo.__file__);"
        "print(len(resources.files('agentplane.demo').joinpath('agentplane.js').read_bytes()))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(build), "PATH": ""}, timeout=60, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    module_file, size = found.stdout.split()
    assert Path(module_file).is_relative_to(build)
    assert int(size) == len(read_asset("agentplane.js"))


async def test_demo_routes_serve_the_page_and_the_module() -> None:
    app = Starlette(routes=demo_routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        redirect = await client.get("/demo?call_id=c1")
        assert redirect.status_code == 308
        assert redirect.headers["location"] == "http://gateway/demo/?call_id=c1"

        page = await client.get("/demo/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"  # ?token= stays here
        assert '<script type="module" src="demo.js">' in page.text

        module = await client.get("/demo/agentplane.js")
        assert module.status_code == 200
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"
        assert module.content == (BROWSER_CLIENT / "agentplane.js").read_bytes()
        cached = await client.get(
            "/demo/agentplane.js", headers={"if-none-match": module.headers["etag"]}
        )
        assert cached.status_code == 304 and cached.content == b""

        types = await client.get("/demo/agentplane.d.ts")
        assert types.status_code == 200 and "class AgentplaneError" in types.text

        assert (await client.get("/demo/demo.js")).status_code == 200
        assert (await client.get("/demo/setup.py")).status_code == 404
        assert (await client.get("/demo/../setup.py")).status_code == 404
