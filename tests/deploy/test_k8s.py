"""deploy/k8s: valid Kubernetes objects that fit together, and a pod's container that serves.

Schemas: kubernetes-validate's offline copies of Kubernetes' own, strict (an
unknown field fails), for the oldest release whose probes these manifests use
(gRPC probes are GA in 1.27) and the newest it ships. Then what no schema
sees: selectors that select, named ports that exist, a grace period that
covers the drain. Last, the agentplane container's args run as Kubernetes
would expand them (``$(POD_IP)`` from the downward API, the Secret's keys)
against the Redis that redis.yaml's container runs, and its probes are asked
as the kubelet would ask them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import kubernetes_validate
import pytest
import redis
import yaml
from grpclib.health.v1 import health_pb2

from agentplane.cluster import ClusterKeys
from tests.deploy.support import (
    K8S,
    LOOPBACK,
    Placement,
    Proc,
    exits_cleanly,
    image_entrypoint,
    k8s_documents,
    k8s_expand,
    k8s_object,
    start,
    start_guarded_session,
    start_redis,
    stop_all,
    stop_bound,
    stop_redis,
    wait_ready,
)
from tests.server.support import SERVICE, health_check

VERSIONS = ("1.27", "1.37")
# What `kubectl create secret generic agentplane --from-literal=...` would hold.
SECRETS = {"agentplane": {"api-token": "k8s-test-token", "close-token-secret": "k" * 32}}


def _pod(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = k8s_object("Deployment", name)["spec"]["template"]["spec"]
    return spec


def _container(name: str) -> dict[str, Any]:
    (container,) = _pod(name)["containers"]
    return container


def _named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        assert port in {p["containerPort"] for p in container["ports"]}, port
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


# ------------------------------------------------------------------ the files


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schema_strictly(version: str) -> None:
    documents = k8s_documents()
    assert {doc["kind"] for doc in documents} == {"Deployment", "Service", "PodDisruptionBudget"}
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {error}")
    # Strict: a misspelt field fails.
    broken = k8s_object("Deployment", "agentplane")
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 90
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_selectors_select_their_pods_and_target_ports_exist() -> None:
    deployments = [doc for doc in k8s_documents() if doc["kind"] == "Deployment"]
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    def selected(selector: dict[str, str]) -> list[dict[str, Any]]:
        return [
            d
            for d in deployments
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]

    for service in (doc for doc in k8s_documents() if doc["kind"] == "Service"):
        (deployment,) = selected(service["spec"]["selector"])
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for port in service["spec"]["ports"]:
            _named_port(container, port["targetPort"])
    (budget,) = [doc for doc in k8s_documents() if doc["kind"] == "PodDisruptionBudget"]
    (deployment,) = selected(budget["spec"]["selector"]["matchLabels"])
    assert deployment["metadata"]["name"] == "agentplane"
    assert budget["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


def test_three_nodes_advertise_their_pod_ip_and_share_the_redis_service() -> None:
    deployment = k8s_object("Deployment", "agentplane")
    assert deployment["spec"]["replicas"] == 3
    container = _container("agentplane")
    args = container["args"]
    advertise = args[args.index("--advertise-address") + 1]
    grpc_port = args[args.index("--grpc-port") + 1]
    assert advertise == f"$(POD_IP):{grpc_port}"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    redis_service = k8s_object("Service", "redis")
    (redis_port,) = redis_service["spec"]["ports"]
    assert env["AGENTPLANE_REDIS_URL"]["value"] == (
        f"redis://{redis_service['metadata']['name']}:{redis_port['port']}/0"
    )
    # One Redis server, replaced (never two at once behind the Service).
    redis_deployment = k8s_object("Deployment", "redis")
    assert redis_deployment["spec"]["replicas"] == 1
    assert redis_deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_probes_ask_the_servers_own_health_and_readiness() -> None:
    container = _container("agentplane")
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/ready"
    assert _named_port(container, readiness["port"]) == 8000
    for probe in ("livenessProbe", "startupProbe"):
        # Health service "liveness": SERVING while the process serves, draining
        # and warming up included. Never "" (the gRPC probe's default): that is
        # readiness, and a liveness probe on it would restart a draining pod.
        assert container[probe]["grpc"] == {"port": 50051, "service": "liveness"}, probe
    assert _named_port(container, container["livenessProbe"]["grpc"]["port"]) == 50051


def test_the_grace_period_covers_the_prestop_sleep_and_a_whole_drain() -> None:
    pod = _pod("agentplane")
    pre_stop = _container("agentplane")["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep", pre_stop
    # The grace period counts from the pod's deletion: preStop runs inside it.
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + stop_bound() + 5
    # A rolling update brings a new pod up before an old one drains.
    strategy = k8s_object("Deployment", "agentplane")["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


# ------------------------------------------------------------- the container


@dataclass
class Pod:
    proc: Proc
    ports: dict[int, int]
    redis_url: str


def _expanded_env(container: dict[str, Any], placement: Placement, pod_ip: str) -> dict[str, str]:
    """The container's environment as the kubelet makes it, addresses moved to loopback."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = placement.address(k8s_expand(item["value"], env))
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "status.podIP", source
            env[item["name"]] = pod_ip
        else:
            ref = source["secretKeyRef"]
            value = SECRETS.get(ref["name"], {}).get(ref["key"])
            assert value is not None or ref.get("optional"), ref
            if value is not None:
                env[item["name"]] = value
    return env


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    placement = Placement()
    redis_container = _container("redis")
    redis_ports = placement.add(
        [k8s_object("Service", "redis")["metadata"]["name"]],
        [p["containerPort"] for p in redis_container["ports"]],
    )
    redis_server = start_redis(
        [*redis_container["command"], *redis_container["args"]],
        redis_ports[6379],
        tmp_path_factory.mktemp("redis"),
    )
    procs: list[Proc] = []
    try:
        container = _container("agentplane")
        # The pod's IP is this machine's loopback: its own ports are the pod's.
        own = placement.add([LOOPBACK], [p["containerPort"] for p in container["ports"]])
        env = _expanded_env(container, placement, LOOPBACK)
        args = [k8s_expand(arg, env) for arg in container["args"]]
        argv = [*image_entrypoint(), *placement.localize(args, own)]
        proc = start(argv, env)
        procs.append(proc)
        readiness = container["readinessProbe"]["httpGet"]
        port = own[_named_port(container, readiness["port"])]
        wait_ready(f"http://{LOOPBACK}:{port}{readiness['path']}", proc)
        yield Pod(proc, own, f"redis://{LOOPBACK}:{redis_ports[6379]}/0")
    finally:
        stop_all(procs)
        stop_redis(redis_server)


def test_the_liveness_and_startup_probes_get_serving(pod: Pod) -> None:
    container = _container("agentplane")
    for probe in ("livenessProbe", "startupProbe"):
        spec = container[probe]["grpc"]
        with grpc.insecure_channel(f"{LOOPBACK}:{pod.ports[spec['port']]}") as channel:
            status = health_check(channel, spec.get("service", ""))
        assert status == health_pb2.HealthCheckResponse.SERVING, probe
    # Readiness has gRPC twins (for clients that watch health, not /ready):
    # service "" (a gRPC readinessProbe's default) and the SessionService.
    with grpc.insecure_channel(f"{LOOPBACK}:{pod.ports[50051]}") as channel:
        for service in ("", SERVICE):
            assert health_check(channel, service) == health_pb2.HealthCheckResponse.SERVING


def test_the_pod_joined_the_cluster_at_its_pod_ip(pod: Pod) -> None:
    client = redis.Redis.from_url(pod.redis_url, decode_responses=True)
    try:
        keys = ClusterKeys()
        (node_id,) = client.zrange(keys.nodes, 0, -1)
        address = client.hget(keys.node_info(node_id), "address")
    finally:
        client.close()
    assert address == f"{LOOPBACK}:{pod.ports[50051]}"  # $(POD_IP):50051


def test_the_secret_s_token_guards_the_http_service(pod: Pod) -> None:
    http = f"http://{LOOPBACK}:{pod.ports[8000]}"
    auth = {"Authorization": f"Bearer {SECRETS['agentplane']['api-token']}"}
    session_id = start_guarded_session(http, SECRETS["agentplane"]["api-token"], "deploy-k8s")
    closed = httpx.delete(f"{http}/sessions/{session_id}", headers=auth, timeout=30)
    assert closed.status_code == 200, closed.text


def test_redis_runs_with_the_manifest_s_arguments(pod: Pod) -> None:
    # The fixture started redis-server with them; CONFIG GET shows they took.
    client = redis.Redis.from_url(pod.redis_url, decode_responses=True)
    try:
        config = client.config_get("*")
    finally:
        client.close()
    assert config["save"] == "" and config["appendonly"] == "no"
    assert config["maxmemory-policy"] == "noeviction"


def test_sigterm_after_prestop_drains_and_exits_within_the_grace_period(pod: Pod) -> None:
    pre_stop = _container("agentplane")["lifecycle"]["preStop"]["exec"]["command"]
    budget = _pod("agentplane")["terminationGracePeriodSeconds"] - float(pre_stop[1])
    code, _ = exits_cleanly(pod.proc, budget)
    assert code == 0, pod.proc.text()
    assert "SIGTERM: draining" in pod.proc.text()
