"""deploy/compose.yaml: valid Compose, and its services' commands run as a working cluster.

The schema is the Compose Specification's, as dclint ships it (npm, installed
by ``./dev`` from package.json); dclint itself lints the file too. Then each
service's command runs as a local process: the real ``redis-server`` with the
file's flags, three ``agentplane serve`` nodes and the ``agentplane gateway``
with the file's arguments and environment, every service name and port moved
to a free loopback port (the image's entry point, ``agentplane``, in front).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import redis

from agentplane.cluster import ClusterKeys
from tests.deploy.support import (
    COMPOSE,
    LOOPBACK,
    REPO_ROOT,
    Placement,
    Proc,
    compose_interpolate,
    exec_form,
    exits_cleanly,
    final_stage,
    flag_value,
    image_entrypoint,
    load_compose,
    program,
    seconds,
    start,
    start_guarded_session,
    start_redis,
    stop_all,
    stop_bound,
    stop_redis,
    wait_ready,
)

NODES = ("node1", "node2", "node3")
NODE_PORTS = (8000, 50051)
TOKEN = "deploy-test-token"
# What a user would put in the environment or an .env file beside compose.yaml.
USER_ENV = {"AGENTPLANE_API_TOKEN": TOKEN, "AGENTPLANE_CLOSE_TOKEN_SECRET": "s" * 32}
SCHEMA = REPO_ROOT / "node_modules" / "dclint" / "schemas" / "compose.schema.json"
DCLINT = REPO_ROOT / "node_modules" / ".bin" / "dclint"


def _needs_node_tools(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path} is missing: run the tests through ./dev (npm ci installs dclint)")


# ------------------------------------------------------------------ the file


def test_compose_yaml_is_valid_against_the_compose_specification_schema() -> None:
    _needs_node_tools(SCHEMA)
    schema = json.loads(SCHEMA.read_text())
    assert schema.get("title") == "Compose Specification"
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(load_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # The schema is strict (unknown keys fail): a misspelt key would be caught.
    broken = load_compose()
    broken["services"]["node1"]["stop_grace_periods"] = "75s"
    assert not validator.is_valid(broken)


def _dclint(path: Path) -> subprocess.CompletedProcess[str]:
    # --quiet: errors only (its warnings are taste: key order, quoting style).
    return subprocess.run(
        [str(DCLINT), "--quiet", "--color=false", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def test_dclint_finds_no_error_in_compose_yaml(tmp_path: Path) -> None:
    _needs_node_tools(DCLINT)
    if shutil.which("node") is None:
        pytest.fail("node is not installed")
    done = _dclint(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr
    # It does find errors: the same file with a misspelt key fails.
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period: 10s", "stop_grace: 10s"))
    failed = _dclint(broken)
    assert failed.returncode != 0 and "invalid-schema" in failed.stdout, failed.stdout


def test_the_nodes_form_one_cluster_behind_the_gateway_as_written() -> None:
    services = load_compose()["services"]
    urls = {flag_value(services[name]["command"], "--redis-url") for name in NODES}
    assert urls == {"redis://redis:6379/0"}
    advertised = [flag_value(services[name]["command"], "--advertise-address") for name in NODES]
    # Each node advertises the name the others resolve it by, at its gRPC port.
    assert advertised == [
        f"{services[name]['hostname']}:{flag_value(services[name]['command'], '--grpc-port')}"
        for name in NODES
    ]
    assert [services[name]["hostname"] for name in NODES] == list(NODES)
    for name in NODES:
        assert flag_value(services[name]["command"], "--host") == "0.0.0.0"
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert services[name]["environment"] == services["node1"]["environment"]
    # The gateway's upstream names every node (a network alias they share).
    upstream_host = flag_value(services["gateway"]["command"], "--upstream").split(":")[0]
    for name in NODES:
        assert upstream_host in services[name]["networks"]["default"]["aliases"]
    assert services["gateway"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in NODES
    }
    # Only the gateway is published, on the host's loopback.
    published = {name: s.get("ports", []) for name, s in services.items()}
    assert published == {
        "redis": [],
        **{name: [] for name in NODES},
        "gateway": ["127.0.0.1:8000:8000"],
    }


def test_stop_grace_periods_cover_a_whole_drain() -> None:
    services = load_compose()["services"]
    for name in NODES:
        # Past it, docker sends SIGKILL: a drain cut short ends agents mid-call.
        assert seconds(services[name]["stop_grace_period"]) >= stop_bound() + 5, name
    # The gateway gives requests in flight 5 s (agentplane.http.standalone).
    assert seconds(services["gateway"]["stop_grace_period"]) > 5


def test_healthchecks_ask_ready_and_the_images_asks_health() -> None:
    services = load_compose()["services"]
    for name in (*NODES, "gateway"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and "http://127.0.0.1:8000/ready" in test[-1], name
    healthcheck = final_stage("HEALTHCHECK")
    assert "http://127.0.0.1:8000/health" in healthcheck


# ------------------------------------------------------------ the processes


@dataclass
class Cluster:
    placement: Placement
    nodes: dict[str, Proc]
    gateway: Proc
    redis_url: str

    def http(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.placement.ports[name][8000]}"


def _argv(service: dict[str, Any], placement: Placement, own: dict[int, int]) -> list[str]:
    return [*image_entrypoint(), *placement.localize(service["command"], own)]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {
        key: compose_interpolate(str(value), USER_ENV)
        for key, value in service.get("environment", {}).items()
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    services = load_compose()["services"]
    placement = Placement()
    redis_ports = placement.add(["redis"], [6379])
    redis_server = start_redis(
        services["redis"]["command"], redis_ports[6379], tmp_path_factory.mktemp("redis")
    )
    procs: list[Proc] = []
    try:
        owns = {
            name: placement.add(
                [
                    name,
                    services[name]["hostname"],
                    *services[name]["networks"]["default"]["aliases"],
                ],
                NODE_PORTS,
            )
            for name in NODES
        }
        nodes = {
            name: start(_argv(services[name], placement, owns[name]), _environment(services[name]))
            for name in NODES
        }
        procs.extend(nodes.values())
        for name, proc in nodes.items():
            wait_ready(f"http://{LOOPBACK}:{owns[name][8000]}/ready", proc)
        gateway_ports = placement.add(["gateway"], [8000])
        gateway = start(
            _argv(services["gateway"], placement, gateway_ports),
            _environment(services["gateway"]),
        )
        procs.append(gateway)
        wait_ready(f"http://{LOOPBACK}:{gateway_ports[8000]}/ready", gateway)
        yield Cluster(placement, nodes, gateway, f"redis://{LOOPBACK}:{redis_ports[6379]}/0")
    finally:
        stop_all(procs)
        stop_redis(redis_server)


def _run_healthcheck(test: list[str], port: int) -> subprocess.CompletedProcess[str]:
    """A healthcheck's ``CMD`` argv, run here against ``port`` instead of 8000."""
    assert test[0] == "CMD", test
    argv = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in test[1:]]
    return subprocess.run(
        [program(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=30, check=False
    )


def test_every_healthcheck_passes_once_the_cluster_is_up(cluster: Cluster) -> None:
    services = load_compose()["services"]
    for name in (*NODES, "gateway"):
        done = _run_healthcheck(
            services[name]["healthcheck"]["test"], cluster.placement.ports[name][8000]
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"
    # The image's own HEALTHCHECK (liveness, /health) on a node and on the gateway.
    image_check = exec_form(final_stage("HEALTHCHECK").split(" CMD ", 1)[1])
    for name in ("node1", "gateway"):
        done = _run_healthcheck(["CMD", *image_check], cluster.placement.ports[name][8000])
        assert done.returncode == 0, f"{name}: {done.stderr}"
    redis_check = services["redis"]["healthcheck"]["test"]
    assert redis_check[0] == "CMD"
    done = subprocess.run(
        [program(redis_check[1]), "-p", str(cluster.placement.ports["redis"][6379]),
         *redis_check[2:]],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "PONG", done.stdout + done.stderr


def test_each_node_joined_the_cluster_at_its_advertised_address(cluster: Cluster) -> None:
    client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
    try:
        keys = ClusterKeys()  # the default prefix: the file sets none
        live = client.zrange(keys.nodes, 0, -1)
        addresses = {client.hget(keys.node_info(node_id), "address") for node_id in live}
    finally:
        client.close()
    # --advertise-address nodeN:50051, as the other containers would dial it.
    assert addresses == {f"{LOOPBACK}:{cluster.placement.ports[name][50051]}" for name in NODES}


def test_a_session_started_through_the_gateway_is_read_from_every_node(cluster: Cluster) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    gateway = cluster.http("gateway")
    # The token from the environment reached the nodes: without it, 401.
    session_id = start_guarded_session(gateway, TOKEN, "deploy-compose")
    # Any node answers for any session (what lets the gateway reach any of them).
    for name in NODES:
        seen = httpx.get(f"{cluster.http(name)}/sessions/{session_id}", headers=auth, timeout=30)
        assert seen.status_code == 200 and seen.json()["session_id"] == session_id, name
    closed = httpx.delete(f"{gateway}/sessions/{session_id}", headers=auth, timeout=30)
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "SESSION_STATE_ENDED"


def test_sigterm_stops_every_process_cleanly_within_its_stop_grace_period(
    cluster: Cluster,
) -> None:
    services = load_compose()["services"]
    code, _ = exits_cleanly(cluster.gateway, seconds(services["gateway"]["stop_grace_period"]))
    assert code == 0, cluster.gateway.text()
    for name, proc in cluster.nodes.items():
        # No session runs: the drain has nothing to wait for.
        code, _ = exits_cleanly(proc, seconds(services[name]["stop_grace_period"]))
        assert code == 0, proc.text()
        assert "draining" in proc.text(), proc.text()
