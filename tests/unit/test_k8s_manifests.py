"""Offline checks of deploy/k8s: every overlay renders with kustomize semantics, every built-in object passes
the Kubernetes API's own OpenAPI schema (kubernetes-validate, strict), and the invariants the deployment
promises hold (probes, limits, hardening, secrets, selectors, network isolation, scaling wiring)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from kazru.adapters import bus
from kazru.adapters.encryption import new_key_entry
from kazru.adapters.model_files import gigaam_model_files
from kazru.adapters.storage import ObjectStore
from kazru.settings import Deployment, Settings
from tests.kustomize_render import load_documents, pod_template, render

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "gpu", "gigaam")
# The newest Kubernetes whose schemas kubernetes-validate 1.37.0 ships.
KUBERNETES_VERSION = "1.37.0"
NAMESPACES = {"dev": "kazru-dev", "prod": "kazru", "gpu": "kazru", "gigaam": "kazru"}
APP_WORKLOADS = ("gateway", "ingest", "exporter", "transcriber", "janitor")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
CREDENTIAL_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|DATABASE_URL", re.IGNORECASE)
# Who may open a connection to whom, and on which port: the services' composition roots (services/*/__main__.py).
# The gateway's GET /api/v1/health also pings S3, the transcriber and the janitor (services/gateway/core.py).
EXPECTED_CONNECTIONS = {
    ("gateway", "postgres", 5432), ("gateway", "nats", 4222), ("gateway", "ingest", 50061),
    ("gateway", "exporter", 50062), ("gateway", "transcriber", 50063), ("gateway", "janitor", 50064),
    ("gateway", "minio", 9000),
    ("ingest", "postgres", 5432), ("ingest", "nats", 4222), ("ingest", "minio", 9000),
    ("transcriber", "postgres", 5432), ("transcriber", "nats", 4222), ("transcriber", "minio", 9000),
    ("exporter", "postgres", 5432),
    ("janitor", "postgres", 5432), ("janitor", "minio", 9000), ("janitor", "nats", 4222),
    ("nats", "nats", 6222),
}  # fmt: skip


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    return tuple(render(K8S / "overlays" / overlay))


def objects(overlay: str, kind: str | None = None) -> list[dict]:
    return [obj for obj in rendered(overlay) if kind is None or obj["kind"] == kind]


def get(overlay: str, kind: str, name: str) -> dict:
    (found,) = [obj for obj in objects(overlay, kind) if obj["metadata"]["name"] == name]
    return found


def workloads(overlay: str) -> list[dict]:
    return [obj for obj in rendered(overlay) if obj["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict) -> dict:
    return pod_template(workload)["spec"]


def containers(workload: dict, init: bool = True) -> list[dict]:
    spec = pod_spec(workload)
    return [*(spec.get("initContainers", []) if init else []), *spec["containers"]]


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def env_of(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env", [])}


# --- rendering and schema validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_passes_the_kubernetes_schema(overlay):
    validated_kinds = set()
    for obj in rendered(overlay):
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no schema in kubernetes-validate; checked structurally below
        # Raises on any unknown field (strict), wrong type or missing required field; SchemaNotFoundError for an
        # apiVersion/kind this Kubernetes version does not serve (e.g. a removed beta API).
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        validated_kinds.add(obj["kind"])
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy", "Namespace"} <= validated_kinds  # fmt: skip


def test_the_schema_check_has_teeth():
    deployment = get("prod", "Deployment", "gateway")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {"port": 50051}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _kubectl_kustomize() -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    probe = subprocess.run([kubectl, "kustomize", "--help"], capture_output=True, text=True)
    return kubectl if probe.returncode == 0 else None


@pytest.mark.skipif(_kubectl_kustomize() is None, reason="no kubectl with built-in kustomize on this machine")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_agrees_with_kubectl_kustomize(overlay):
    """Where the real kustomize is at hand, the test renderer must print the very same objects."""

    def normalized(obj: dict) -> dict:
        if obj["kind"] == "Secret":  # kustomize wraps long base64 lines
            obj = {**obj, "data": {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}}
        return obj

    output = subprocess.run(
        [_kubectl_kustomize(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    theirs = {_identity(obj): normalized(obj) for obj in yaml.safe_load_all(output) if obj}
    ours = {_identity(obj): normalized(obj) for obj in rendered(overlay)}
    assert ours.keys() == theirs.keys()
    for identity, obj in ours.items():
        assert obj == theirs[identity], identity


def _identity(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_the_overlay_namespace(overlay):
    namespace = NAMESPACES[overlay]
    assert get(overlay, "Namespace", namespace)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    for obj in rendered(overlay):
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, _identity(obj)


# --- containers: probes, resources, hardening, commands ---------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_resources_and_a_locked_down_security_context(overlay):
    for workload in workloads(overlay):
        spec = pod_spec(workload)
        where = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["securityContext"].get("runAsUser", 1) != 0, where
        assert spec.get("automountServiceAccountToken") is False, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], where
        for container in containers(workload):
            name = f"{where}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add"), name
            assert not context.get("privileged"), name
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), name
            assert {"cpu", "memory"} <= resources["limits"].keys(), name
        # Init containers and Jobs run to completion: no probes.
        for container in spec["containers"] if workload["kind"] not in ("Job", "CronJob") else ():
            name = f"{where}/{container['name']}"
            assert "livenessProbe" in container and "readinessProbe" in container, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_use_native_grpc_probes_on_the_port_they_bind(overlay):
    config = get(overlay, "ConfigMap", "kazru-config")["data"]
    bind_settings = {"gateway": "KAZRU_PUBLIC_GRPC_ADDRESS", "ingest": "KAZRU_INGEST_ADDRESS",
                     "exporter": "KAZRU_EXPORTER_ADDRESS", "transcriber": "KAZRU_TRANSCRIBER_ADDRESS",
                     "janitor": "KAZRU_JANITOR_ADDRESS"}  # fmt: skip
    for name, setting in bind_settings.items():
        (container,) = pod_spec(get(overlay, "Deployment", name))["containers"]
        bind_port = int(env_of(container)[setting]["value"].rsplit(":", 1)[1])
        assert container["readinessProbe"]["grpc"]["port"] == bind_port, name
        assert any(port["containerPort"] == bind_port for port in container["ports"]), name
        if name != "gateway":
            assert container["livenessProbe"]["grpc"]["port"] == bind_port, name
            # other services reach it through its Service at the address the ConfigMap gives them
            host, port = config[setting].rsplit(":", 1)
            service = get(overlay, "Service", host)
            assert int(port) in [p["port"] for p in service["spec"]["ports"]], name
            assert labels_match(service["spec"]["selector"], pod_template(get(overlay, "Deployment", name))[
                "metadata"]["labels"]), name  # fmt: skip
    (gateway,) = pod_spec(get(overlay, "Deployment", "gateway"))["containers"]
    http_port = int(env_of(gateway)["KAZRU_HTTP_PORT"]["value"])
    assert gateway["livenessProbe"]["httpGet"]["port"] in ("http", http_port)
    assert {"name": "http", "containerPort": http_port} in gateway["ports"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_name_modules_that_exist(overlay):
    for name in APP_WORKLOADS:
        for container in containers(get(overlay, "Deployment", name)):
            python, flag, module, *_ = container["command"]
            assert (python, flag) == ("python", "-m")
            package = REPO / module.replace(".", "/")
            assert (package / "__main__.py").is_file() or package.with_suffix(".py").is_file(), module
        init = pod_spec(get(overlay, "Deployment", name))["initContainers"]
        # Migrations before every service; the GigaAM transcriber first waits for its model (test below).
        assert init[-1]["command"] == ["python", "-m", "kazru.db.migrate"], name
        assert len(init) == 1 or (overlay, name) == ("gigaam", "transcriber"), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configured_settings_exist_in_kazru_settings(overlay):
    known = set()
    for field, info in Settings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings):  # an engine's group
            known |= {f"KAZRU_{field.upper()}_{inner.upper()}" for inner in info.annotation.model_fields}
        else:
            known.add(f"KAZRU_{field.upper()}")
    names = set(get(overlay, "ConfigMap", "kazru-config")["data"])
    for name in APP_WORKLOADS:
        for container in containers(get(overlay, "Deployment", name)):
            names |= set(env_of(container))
    assert names <= known, sorted(names - known)


# --- secrets ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_referenced_secret_exists_and_no_credential_is_inlined(overlay):
    secrets = {s["metadata"]["name"]: s for s in objects(overlay, "Secret")}
    references = 0
    for workload in workloads(overlay):
        where = workload["metadata"]["name"]
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, where
        for container in containers(workload):
            for source in container.get("envFrom", []):
                assert "secretRef" not in source or source["secretRef"]["name"] in secrets, where
            for entry in container.get("env", []):
                if "value" in entry:
                    # A credential never sits in a manifest: by name, or as user:password@ inside a URL.
                    assert not CREDENTIAL_NAME.search(entry["name"]), f"{where}: {entry['name']} is inlined"
                    assert not re.search(r"://[^/@\s]+:[^/@\s]+@", entry["value"]), f"{where}: {entry['name']}"
                reference = entry.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    references += 1
                    secret = secrets.get(reference["name"])
                    assert secret is not None, f"{where}: secret {reference['name']} is not in the render"
                    assert reference["key"] in secret.get("data", {}) or reference.get("optional"), (
                        f"{where}: {reference['name']}/{reference['key']}"
                    )
    assert references >= 10
    for config in objects(overlay, "ConfigMap"):
        for key, value in config.get("data", {}).items():
            assert not CREDENTIAL_NAME.search(key), key
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_services_that_read_or_write_audio_get_the_encryption_keys(overlay):
    """The master keys open every recording: the gateway (playback), ingest (upload, probe) and the transcriber
    (decode) get them from the Secret; the janitor (lists, deletes) and the exporter do not."""
    given = set()
    for workload in workloads(overlay):
        for container in containers(workload):
            for entry in container.get("env", []):
                if entry["name"] == "KAZRU_ENCRYPTION_KEYS":
                    assert entry["valueFrom"]["secretKeyRef"] == {"name": "kazru-secrets", "key": "encryption-keys"}
                    given.add(workload["metadata"]["name"])
    assert given == {"gateway", "ingest", "transcriber"}


def test_the_committed_secret_values_are_placeholders():
    """secrets.env ships with the repository: it must never hold a real credential (README: replace it)."""
    lines = [line for line in (K8S / "base" / "secrets.env").read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        key, _, value = line.partition("=")
        assert "REPLACE" in value, key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_starts_in_production_once_the_placeholders_are_replaced(overlay, monkeypatch):
    """The manifests run KAZRU_DEPLOYMENT=production: with the Secret's placeholders replaced by credentials of
    the operator's own, each container's settings pass production's checks (the exporter's and the migrations',
    given no S3 credential and no key, too), and each service that uses S3 has what its store needs."""
    config = get(overlay, "ConfigMap", "kazru-config")["data"]
    assert (config["KAZRU_DEPLOYMENT"], config["KAZRU_ANONYMOUS_ACCESS"]) == ("production", "deny")
    operators_own = {
        **{key: f"operator-{key}" for key in get(overlay, "Secret", "kazru-secrets")["data"]},
        "encryption-keys": new_key_entry("2026-01"),
        "encryption-key-id": "2026-01",
    }
    for name in APP_WORKLOADS:
        for container in containers(get(overlay, "Deployment", name)):
            environment = {}
            for source in container.get("envFrom", []):
                environment |= get(overlay, "ConfigMap", source["configMapRef"]["name"])["data"]
            for entry in container.get("env", []):
                reference = entry.get("valueFrom", {}).get("secretKeyRef")
                if "value" in entry:
                    environment[entry["name"]] = entry["value"]
                elif reference and not reference.get("optional"):
                    environment[entry["name"]] = operators_own[reference["key"]]
            for variable in [variable for variable in os.environ if variable.startswith("KAZRU_")]:
                monkeypatch.delenv(variable)
            for variable, value in environment.items():
                monkeypatch.setenv(variable, value)
            settings = Settings()
            assert settings.deployment is Deployment.PRODUCTION, (name, container["name"])
            if (name, "minio", 9000) in EXPECTED_CONNECTIONS and container["name"] == name:
                ObjectStore(settings, with_keys=name != "janitor")  # refuses missing credentials or keys


# --- selectors, services, budgets -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_match_their_pods(overlay):
    templates = [pod_template(w)["metadata"]["labels"] for w in workloads(overlay)]
    for workload in workloads(overlay):
        if workload["kind"] in ("Deployment", "StatefulSet"):
            assert labels_match(workload["spec"]["selector"]["matchLabels"], pod_template(workload)["metadata"][
                "labels"]), workload["metadata"]["name"]  # fmt: skip
    for service in objects(overlay, "Service"):
        selected = [w for w in workloads(overlay) if labels_match(service["spec"]["selector"],
                                                                   pod_template(w)["metadata"]["labels"])]  # fmt: skip
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        named_ports = {p["name"] for w in selected for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        numbered = {p["containerPort"] for w in selected for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in named_ports | numbered, service["metadata"]["name"]
    for budget in objects(overlay, "PodDisruptionBudget"):
        assert any(labels_match(budget["spec"]["selector"]["matchLabels"], labels) for labels in templates)
    for statefulset in objects(overlay, "StatefulSet"):
        assert get(overlay, "Service", statefulset["spec"]["serviceName"])["spec"].get("clusterIP") == "None"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaled_deployments_leave_the_replica_count_to_their_autoscaler(overlay):
    hpa = get(overlay, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for name in ("gateway", "transcriber"):
        assert "replicas" not in get(overlay, "Deployment", name)["spec"], name


def test_prod_keeps_a_pod_through_every_voluntary_disruption():
    """In prod every budgeted workload runs at least two pods, so maxUnavailable: 1 always leaves one serving."""
    minimum = {"gateway": get("prod", "HorizontalPodAutoscaler", "gateway")["spec"]["minReplicas"],
               "transcriber": get("prod", "ScaledObject", "transcriber")["spec"]["minReplicaCount"]}  # fmt: skip
    budgets = {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: b
        for b in objects("prod", "PodDisruptionBudget")
    }
    assert {"gateway", "ingest", "exporter", "transcriber", "nats"} <= budgets.keys()
    for name, budget in budgets.items():
        kind = "StatefulSet" if name == "nats" else "Deployment"
        replicas = minimum.get(name) or get("prod", kind, name)["spec"]["replicas"]
        assert replicas >= 2 and budget["spec"]["maxUnavailable"] == 1, name
        affinity = pod_spec(get("prod", kind, name)).get("affinity", {}).get("podAntiAffinity")
        assert affinity, f"{name} replicas may share one node"


def test_dev_runs_one_of_everything():
    for workload in workloads("dev"):
        assert workload["spec"].get("replicas", 1) == 1, workload["metadata"]["name"]
    assert get("dev", "HorizontalPodAutoscaler", "gateway")["spec"]["minReplicas"] == 1
    assert get("dev", "ScaledObject", "transcriber")["spec"]["minReplicaCount"] == 1


# --- NATS, KEDA, GPU ----------------------------------------------------------------------------------------------


def test_prod_runs_a_three_server_jetstream_cluster():
    nats = get("prod", "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["podManagementPolicy"] == "Parallel"
    required = pod_spec(nats)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    config = get("prod", "ConfigMap", "nats-config")["data"]["nats.conf"]
    headless = nats["spec"]["serviceName"]
    routes = re.findall(r"nats://([\w-]+)\.([\w-]+):6222", config)
    assert routes == [(f"nats-{i}", headless) for i in range(3)]
    assert "jetstream" in config and "store_dir: /data" in config and "server_name: $POD_NAME" in config
    (container,) = pod_spec(nats)["containers"]
    assert env_of(container)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert {"mountPath": "/data", "name": "data"} in container["volumeMounts"]
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert "cluster" not in get("dev", "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert get("dev", "StatefulSet", "nats")["spec"]["replicas"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_job_queue_is_kept_on_every_nats_server(overlay):
    servers = get(overlay, "StatefulSet", "nats")["spec"].get("replicas", 1)
    configured = get(overlay, "ConfigMap", "kazru-config")["data"].get("KAZRU_JOBS_STREAM_REPLICAS")
    replicas = int(configured) if configured else Settings.model_fields["jobs_stream_replicas"].default
    assert replicas == servers  # more would stop the services at start; fewer loses the queue with a server


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_the_transcriber_on_its_jetstream_consumer(overlay):
    scaled = get(overlay, "ScaledObject", "transcriber")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment" and target["name"] == "transcriber"
    get(overlay, "Deployment", target["name"])
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    metadata = trigger["metadata"]
    # The names the code really uses: the stream from settings (and the ConfigMap), the durable consumer from bus.py.
    assert metadata["stream"] == Settings.model_fields["jobs_stream"].default
    assert metadata["stream"] == get(overlay, "ConfigMap", "kazru-config")["data"]["KAZRU_JOBS_STREAM"]
    assert metadata["consumer"] == bus.TRANSCRIBER_CONSUMER
    assert metadata["account"] == "$G"
    assert int(metadata["lagThreshold"]) >= 1
    # KEDA's operator runs in its own namespace: the endpoint must name this namespace's NATS monitoring port.
    host, port = metadata["natsServerMonitoringEndpoint"].split(":")
    service, namespace, *_ = host.split(".")
    assert namespace == NAMESPACES[overlay]
    assert int(port) in [p["port"] for p in get(overlay, "Service", service)["spec"]["ports"]]
    assert set(metadata) <= {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold",
                             "activationLagThreshold", "useHttps"}  # fmt: skip


def test_gpu_overlay_puts_the_transcriber_on_a_gpu_in_float16():
    transcriber = get("gpu", "Deployment", "transcriber")
    (container,) = pod_spec(transcriber)["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    env = env_of(container)
    assert env["KAZRU_WHISPER_DEVICE"]["value"] == "cuda"
    assert env["KAZRU_WHISPER_COMPUTE_TYPE"]["value"] == "float16"
    assert container["image"].endswith("-gpu")
    # The larger model from the read-only volume every GPU pod shares.
    assert env["KAZRU_WHISPER_MODEL"]["value"] == "/models/whisper-large-v3"
    assert {"name": "whisper-models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    volume = next(v for v in pod_spec(transcriber)["volumes"] if v["name"] == "whisper-models")
    claim = get("gpu", "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    spec = pod_spec(transcriber)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"]
    # Only the transcriber asks for a GPU; prod's transcriber stays on CPU.
    for workload in workloads("gpu"):
        if workload["metadata"]["name"] != "transcriber":
            assert all("nvidia.com/gpu" not in c["resources"]["limits"] for c in containers(workload))
    (cpu,) = pod_spec(get("prod", "Deployment", "transcriber"))["containers"]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"] and not cpu["image"].endswith("-gpu")


def test_gigaam_overlay_fills_the_model_volume_once_and_the_transcribers_read_it(monkeypatch):
    config = get("gigaam", "ConfigMap", "kazru-config")["data"]
    assert config["KAZRU_ENGINE"] == "gigaam"
    # The folder the services compute from this ConfigMap (kazru.settings), not a path written twice.
    for name in [name for name in config if name.startswith("KAZRU_")]:
        monkeypatch.setenv(name, config[name])
    settings = Settings()
    assert settings.engine == "gigaam" and settings.gigaam.quantization == "int8"
    folder = settings.gigaam_model_dir

    def mounted_claim(spec: dict, container: dict) -> tuple[str, str, bool]:
        (mount,) = [m for m in container["volumeMounts"] if folder.is_relative_to(m["mountPath"])]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        return volume["persistentVolumeClaim"]["claimName"], mount["mountPath"], mount.get("readOnly", False)

    # The Job runs the installer, writable, into the claim; the claim is shared by pods on any node.
    job = get("gigaam", "Job", "gigaam-model-install")
    (installer,) = pod_spec(job)["containers"]
    assert installer["command"] == ["python", "-m", "kazru.dev.model_install", "--engine", "gigaam"]
    assert {"configMapRef": {"name": "kazru-config"}} in installer["envFrom"]
    claim, _, read_only = mounted_claim(pod_spec(job), installer)
    assert not read_only and pod_spec(job)["restartPolicy"] == "OnFailure"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # re-created by the next apply, not patched (immutable)
    assert get("gigaam", "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
    assert env_of(installer)["HF_HOME"]["value"].startswith("/tmp/")  # the only writable path besides the claim

    # Every transcriber mounts it read-only and checks it, offline, before migrating and starting.
    transcriber = get("gigaam", "Deployment", "transcriber")
    spec = pod_spec(transcriber)
    check, migrate = spec["initContainers"]
    assert check["command"] == ["python", "-m", "kazru.dev.model_install", "--check"]
    assert migrate["name"] == "migrate"
    (worker,) = spec["containers"]
    for container in (check, worker):
        assert mounted_claim(spec, container) == (claim, "/models", True), container["name"]
        assert {"configMapRef": {"name": "kazru-config"}} in container["envFrom"]
    assert env_of(worker)["KAZRU_GIGAAM_CPU_THREADS"]["value"] == worker["resources"]["requests"]["cpu"]
    (whisper_worker,) = pod_spec(get("prod", "Deployment", "transcriber"))["containers"]

    def gib(quantity: str) -> float:
        return float(quantity.removesuffix("Gi"))

    for bound in ("requests", "limits"):  # the model's ~1 GiB on top of what the Whisper worker needs
        assert gib(worker["resources"][bound]["memory"]) >= gib(whisper_worker["resources"][bound]["memory"]) + 1
    scaled = get("gigaam", "ScaledObject", "transcriber")["spec"]
    assert scaled["triggers"] == get("prod", "ScaledObject", "transcriber")["spec"]["triggers"]
    assert scaled["minReplicaCount"] >= 2 and scaled["maxReplicaCount"] * gib(worker["resources"]["limits"]["memory"]) <= (
        get("prod", "ScaledObject", "transcriber")["spec"]["maxReplicaCount"]
        * gib(whisper_worker["resources"]["limits"]["memory"])
    )  # fmt: skip
    assert "gigaam-models" not in {v["name"] for v in pod_spec(get("prod", "Deployment", "transcriber"))["volumes"]}
    assert gigaam_model_files(settings.gigaam.model, settings.gigaam.quantization)[0] == "multilingual_ctc.int8.onnx"


def test_only_the_gigaam_installer_may_leave_the_namespace_and_only_for_https():
    leaving = {}
    for policy in objects("gigaam", "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    target = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                    leaving[target] = (peer["ipBlock"], [(p["protocol"], p["port"]) for p in rule["ports"]])
    assert leaving.keys() == {"gigaam-model-install"}
    block, ports = leaving["gigaam-model-install"]
    assert ports == [("TCP", 443)]
    assert block["cidr"] == "0.0.0.0/0" and {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(block["except"])
    assert not [p for p in objects("prod", "NetworkPolicy") if "gigaam" in p["metadata"]["name"]]


# --- network policies ---------------------------------------------------------------------------------------------


def _peer_admits(peer: dict, labels: dict) -> bool:
    """Whether an in-namespace peer (podSelector only) admits pods with these labels."""
    if set(peer) != {"podSelector"}:
        return False
    return labels_match(peer["podSelector"].get("matchLabels", {}), labels) or peer["podSelector"] == {}


def _rule_allows(rules: list[dict], direction: str, peer_labels: dict, port: int) -> bool:
    for rule in rules:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        peers = rule.get(direction)
        if peers is None or any(_peer_admits(peer, peer_labels) for peer in peers):
            return True
    return False


def _allowed(overlay: str, source: dict, destination: dict, port: int) -> bool:
    policies = objects(overlay, "NetworkPolicy")

    def selecting(labels: dict, policy_type: str) -> list[dict]:
        return [
            p
            for p in policies
            if policy_type in p["spec"]["policyTypes"]
            and (p["spec"]["podSelector"] == {} or labels_match(p["spec"]["podSelector"]["matchLabels"], labels))
        ]

    egress = selecting(source, "Egress")
    ingress = selecting(destination, "Ingress")
    return (
        bool(egress) and bool(ingress)
        and any(_rule_allows(p["spec"].get("egress", []), "to", destination, port) for p in egress)
        and any(_rule_allows(p["spec"].get("ingress", []), "from", source, port) for p in ingress)
    )  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_expected_connections(overlay):
    policies = {p["metadata"]["name"]: p for p in objects(overlay, "NetworkPolicy")}
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["allow-dns"]["spec"]["egress"][0]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}

    pods = {w["metadata"]["name"]: pod_template(w)["metadata"]["labels"] for w in workloads(overlay)}
    ports = {port for _, _, port in EXPECTED_CONNECTIONS} | {8080, 50051, 9464, 8222}
    allowed = {
        (source, destination, port)
        for source, source_labels in pods.items()
        for destination, destination_labels in pods.items()
        for port in ports
        if _allowed(overlay, source_labels, destination_labels, port)
    }
    # The gateway's public ports are open to every source, in-namespace pods included.
    public = {(source, "gateway", port) for source in pods for port in (8080, 50051)}
    assert allowed - public == EXPECTED_CONNECTIONS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_is_reachable_from_outside_the_namespace(overlay):
    outside = set()
    for policy in objects(overlay, "NetworkPolicy"):
        target = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name", "*")
        for rule in policy["spec"].get("ingress", []):
            rule_ports = tuple(sorted(p["port"] for p in rule.get("ports", [])))
            peers = rule.get("from")
            if peers is None:
                outside.add((target, "anywhere", rule_ports))
                continue
            for peer in peers:
                if "ipBlock" in peer:
                    outside.add((target, peer["ipBlock"]["cidr"], rule_ports))
                elif "namespaceSelector" in peer:
                    namespace = peer["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
                    outside.add((target, f"namespace:{namespace or 'ANY'}", rule_ports))
    # Open to all: the gateway's HTTP and gRPC ports and nothing else (its metrics are not there). Two named
    # namespaces reach two ports: Prometheus in `monitoring` scrapes every service's metrics port, the gateway's
    # included; KEDA in `keda` reads NATS's monitoring port.
    assert {entry for entry in outside if entry[1] in ("anywhere", "namespace:ANY") or "/" in entry[1]} == {
        ("gateway", "anywhere", (8080, 50051))
    }
    assert {entry for entry in outside if entry[1] == "namespace:keda"} == {("nats", "namespace:keda", (8222,))}
    assert {entry for entry in outside if entry[1] == "namespace:monitoring"} == {
        (name, "namespace:monitoring", (9464,)) for name in ("gateway", "ingest", "exporter", "transcriber", "janitor")
    }
    assert all(entry[1] in ("anywhere", "namespace:keda", "namespace:monitoring") for entry in outside), outside


# --- the image ----------------------------------------------------------------------------------------------------


def test_the_image_runs_as_a_numeric_non_root_user_with_the_model_inside():
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    runtime = next(stage for stage in stages if " AS runtime" in stage.splitlines()[0])
    users = re.findall(r"^USER (\S+)", runtime, flags=re.MULTILINE)
    uid = re.search(r"^ARG UID=(\d+)", runtime, flags=re.MULTILINE).group(1)
    assert users == ["${UID}:${UID}"] and int(uid) > 0
    # Every Kubernetes pod running the image pins the same UID.
    for name in APP_WORKLOADS:
        assert pod_spec(get("prod", "Deployment", name))["securityContext"]["runAsUser"] == int(uid)
    # The last stage is the default target and must not be the root-running gpu build step.
    assert stages[-1].strip() == "runtime"
    assert "python -m kazru.dev.model_install" in dockerfile and "COPY --from=builder /opt/kazru /opt/kazru" in runtime
    assert "KAZRU_DATA_DIR=/opt/kazru" in runtime
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "**" in ignored and "kazru/v1/" in ignored  # generated code is rebuilt inside, never copied


def test_every_manifest_file_is_used_by_a_kustomization():
    listed = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        (spec,) = load_documents(kustomization)
        for entry in spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])]:
            listed.add((kustomization.parent / entry).resolve())
    for manifest in K8S.rglob("*.yaml"):
        if manifest.name != "kustomization.yaml":
            assert manifest.resolve() in listed, f"{manifest} is not part of any kustomization"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_is_scraped_on_its_metrics_port_never_on_a_public_one(overlay):
    metrics_port = int(get(overlay, "ConfigMap", "kazru-config")["data"]["KAZRU_METRICS_PORT"])
    for name in APP_WORKLOADS:
        template = pod_template(get(overlay, "Deployment", name))
        annotations = template["metadata"].get("annotations", {})
        (container,) = template["spec"]["containers"]
        assert int(annotations["prometheus.io/port"]) == metrics_port, name
        assert {"name": "metrics", "containerPort": metrics_port} in container["ports"], name
    (gateway,) = pod_spec(get(overlay, "Deployment", "gateway"))["containers"]
    assert metrics_port not in (int(env_of(gateway)["KAZRU_HTTP_PORT"]["value"]), 50051)
