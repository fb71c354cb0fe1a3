"""The Kubernetes manifests of deploy/k8s/, checked without a cluster: every document
matches the Kubernetes schemas of the newest version kubernetes-validate ships (strict: an
unknown field is an error), and the objects fit together (probes on /healthz and /readyz,
metrics ports, selectors, the HPA, the Secret and volume they use).
"""

import re
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_deploy_config import ROOT, exported_metric_names, load_yaml, promql_metric_names

K8S = ROOT / "deploy" / "k8s"


def kustomization() -> dict:
    return load_yaml(K8S / "kustomization.yaml")


def k8s_documents(paths: Iterable[Path]) -> list[tuple[str, dict]]:
    return [
        (path.relative_to(K8S).as_posix(), document)
        for path in paths
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def applied_documents() -> list[tuple[str, dict]]:
    return k8s_documents(K8S / name for name in kustomization()["resources"])


def k8s_object(kind: str, name: str) -> dict:
    (found,) = [
        doc for _, doc in applied_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    return found


def test_kustomization_applies_every_manifest_but_the_templates_and_optional_ones():
    listed = set(kustomization()["resources"])
    assert all((K8S / name).is_file() for name in listed)
    manifests = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == {name for name in manifests if ".example." not in name}
    assert not any(name.startswith("optional/") for name in listed)


@pytest.mark.parametrize(
    "path",
    sorted(
        {
            *(K8S / name for name in load_yaml(K8S / "kustomization.yaml")["resources"]),
            *K8S.glob("*.example.yaml"),
        }
    ),
    ids=lambda path: path.name,
)
def test_manifest_matches_the_kubernetes_schemas(path):
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    errors = []
    for _, document in k8s_documents([path]):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:  # its repr holds the whole schema
            where = ".".join(str(part) for part in error.path)
            errors.append(f"{document['kind']} {document['metadata']['name']}: {where}: {error.message}")
    assert not errors, f"{path.name} does not match Kubernetes {version}: {errors}"


def containers(deployment: dict) -> dict[str, dict]:
    return {
        container["name"]: container for container in deployment["spec"]["template"]["spec"]["containers"]
    }


def test_web_probes_use_healthz_and_readyz():
    web = containers(k8s_object("Deployment", "mlplatform-web"))["web"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {port["name"]: port["containerPort"] for port in web["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[web[probe]["httpGet"]["port"]] == 8000
    # Probes and scrapes arrive with the pod's address as their Host.
    env = {item["name"]: item for item in web["env"]}
    assert "$(POD_IP)" in env["ALLOWED_HOSTS"]["value"]
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_workers_expose_metrics_and_are_probed_on_them():
    worker = containers(k8s_object("Deployment", "mlplatform-worker"))["worker"]
    env = {item["name"]: item.get("value") for item in worker["env"]}
    ports = {port["name"]: port["containerPort"] for port in worker["ports"]}
    assert str(ports["metrics"]) == env["WORKER_METRICS_PORT"] == "9100"
    assert worker["livenessProbe"]["tcpSocket"]["port"] == "metrics"
    assert worker["command"][worker["command"].index("-Q") + 1] == "validation,jobs,default,shadow"


def test_the_grpc_server_is_ready_by_the_grpc_health_service_and_alive_by_its_port():
    grpc = containers(k8s_object("Deployment", "mlplatform-grpc"))["grpc"]
    env = {item["name"]: item.get("value") for item in grpc["env"]}
    ports = {port["name"]: port["containerPort"] for port in grpc["ports"]}
    assert grpc["command"] == ["python", "manage.py", "grpcserver"]
    assert str(ports["grpc"]) == env["GRPC_PORT"] and str(ports["metrics"]) == env["GRPC_METRICS_PORT"]
    readiness = grpc["readinessProbe"]["grpc"]
    assert readiness == {"port": ports["grpc"], "service": "inference.GRPCInferenceService"}
    # NOT_SERVING (a database outage) must take the pod out of the Service, never restart it.
    assert grpc["livenessProbe"]["tcpSocket"]["port"] == "grpc"
    assert grpc["startupProbe"]["tcpSocket"]["port"] == "grpc"
    annotations = k8s_object("Deployment", "mlplatform-grpc")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == env["GRPC_METRICS_PORT"]
    service = k8s_object("Service", "mlplatform-grpc")["spec"]
    (port,) = service["ports"]
    assert port["targetPort"] == "grpc" and port["appProtocol"] == "kubernetes.io/h2c"
    labels = k8s_object("Deployment", "mlplatform-grpc")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    selector = k8s_object("PodDisruptionBudget", "mlplatform-grpc")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()


def test_metrics_folders_are_memory_backed_empty_dirs():
    for name, container in (("mlplatform-web", "web"), ("mlplatform-worker", "worker")):
        deployment = k8s_object("Deployment", name)
        spec = deployment["spec"]["template"]["spec"]
        env = {item["name"]: item.get("value") for item in containers(deployment)[container]["env"]}
        folder = env["PROMETHEUS_MULTIPROC_DIR"]
        (mount,) = [m for m in containers(deployment)[container]["volumeMounts"] if m["mountPath"] == folder]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["emptyDir"]["medium"] == "Memory", name
    assert "PROMETHEUS_MULTIPROC_DIR" not in k8s_object("ConfigMap", "mlplatform-config")["data"]


def test_pods_run_as_the_images_non_root_user():
    uid = int(re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1))
    for _, doc in applied_documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert pod["securityContext"]["runAsUser"] == uid, doc["metadata"]["name"]
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"], container["name"]


def test_scaling_and_disruption_objects_point_at_the_deployments():
    hpa = k8s_object("HorizontalPodAutoscaler", "mlplatform-web")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mlplatform-web",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in k8s_object("Deployment", "mlplatform-web")["spec"], "the HPA owns replicas"
    for name in ("mlplatform-web", "mlplatform-worker"):
        pod_labels = k8s_object("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        selector = k8s_object("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), name
    web_labels = k8s_object("Deployment", "mlplatform-web")["spec"]["template"]["metadata"]["labels"]
    assert k8s_object("Service", "mlplatform-web")["spec"]["selector"].items() <= web_labels.items()
    beat = k8s_object("Deployment", "mlplatform-beat")["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"


def test_workloads_reference_existing_config_secret_and_volume():
    config_maps = {doc["metadata"]["name"] for _, doc in applied_documents() if doc["kind"] == "ConfigMap"}
    claims = {
        doc["metadata"]["name"] for _, doc in applied_documents() if doc["kind"] == "PersistentVolumeClaim"
    }
    (secret,) = [doc for _, doc in k8s_documents(K8S.glob("*.example.yaml")) if doc["kind"] == "Secret"]
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(secret["stringData"])
    for _, doc in applied_documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            for source in container.get("envFrom", []):
                assert source.get("configMapRef", {}).get("name", next(iter(config_maps))) in config_maps
                assert (
                    source.get("secretRef", {}).get("name", secret["metadata"]["name"])
                    == (secret["metadata"]["name"])
                )
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
    (pvc,) = [doc for _, doc in applied_documents() if doc["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_keda_example_scales_workers_on_the_jobs_queue():
    ((_, scaled),) = k8s_documents([K8S / "optional" / "keda-scaledobject.yaml"])
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "mlplatform-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert 'mlplatform_queue_depth{queue="jobs"}' in trigger["metadata"]["query"]
    assert promql_metric_names(trigger["metadata"]["query"]) <= exported_metric_names()
