"""The deployment files, checked without Docker or a cluster (docs/operations.md).

docker-compose.yml references only what it defines and files that exist; nginx's
configuration passes `nginx -t`; Prometheus's configuration and rules pass promtool and
their unit tests; the Grafana dashboard and the alerts name only metrics the platform
exports. The Kubernetes manifests are checked in test_k8s_manifests.py.

promtool (Debian's `prometheus` package) and nginx are installed by .ci/run: in CI a
missing tool fails these tests, elsewhere it skips them.

`dashboard_metric_names()` is also used by the end-to-end test against a live scrape.
"""

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "mlplatform.json"
CERT_SCRIPT = ROOT / "scripts" / "make-dev-cert.sh"


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def require_tool(name: str) -> str:
    """The tool's path; skips the test without it, except in CI, where it must be there."""
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing: .ci/run installs it in CI")
    pytest.skip(f"{name} is not installed (apt-get install prometheus nginx); CI runs this check")


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# --- PromQL: which metrics an expression names --------------------------------------------

# Aggregation operators and keywords that can stand without a parenthesis right after them
# (`sum by (le) (...)`, `a and on () b`); every function is followed by "(" and so skipped.
PROMQL_WORDS = frozenset(
    (
        *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"),
        *("bottomk", "topk", "quantile", "limitk", "limit_ratio"),
        *("by", "without", "on", "ignoring", "group_left", "group_right"),
        *("and", "or", "unless", "offset", "bool", "inf", "nan"),
    )
)
# Series that Prometheus makes itself; no /metrics page has them.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(?:([A-Za-z_:][\w:]*)\s*(?:\{\})?\s*,\s*)?\w+\s*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (or a Grafana label_values() query)."""
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges and subqueries: [5m], [$__rate_interval]
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables outside them
    expr = _GROUPING.sub(r"\1 ()", expr)  # by (model, le): label names, not metrics
    expr = _LABEL_VALUES.sub(lambda match: match.group(1) or "", expr)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        name, rest = match.group(), expr[match.end() :].lstrip()
        if rest.startswith("(") or name.lower() in PROMQL_WORDS:
            continue  # a function call, an aggregation or a keyword
        names.add(name)
    return names


def dashboard_queries(dashboard: dict | None = None) -> list[str]:
    """Every query of the Grafana dashboard: its panels' (rows included) and its variables'."""
    dashboard = dashboard or json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard_panels(dashboard) for target in panel["targets"]]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def dashboard_panels(dashboard: dict) -> Iterator[dict]:
    """The dashboard's panels that show data (rows are only headings), nested ones included."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_metric_names() -> set[str]:
    """Every metric the Grafana dashboard queries, as sample names of a /metrics page:
    counters with `_total`, histograms as `_bucket`, `_sum` or `_count`. Series that Prometheus
    makes itself (`up`) are left out. Web and worker scrapes together have them all."""
    names = set().union(*(promql_metric_names(query) for query in dashboard_queries()))
    return names - PROMETHEUS_SERIES


def alert_expressions() -> dict[str, str]:
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def _sample_names(name: str, kind: str) -> set[str]:
    if kind == "counter":
        return {f"{name}_total"}
    if kind in ("histogram", "summary"):
        return {name, f"{name}_sum", f"{name}_count"} | ({f"{name}_bucket"} if kind == "histogram" else set())
    return {name}


def exported_metric_names() -> set[str]:
    """Every sample name the web's and workers' /metrics can show, read from the code: the
    platform's metrics (apps/core/metrics.py, the queue depths included; apps/rollouts/metrics.py)
    and django-prometheus's HTTP, database and cache metrics."""
    import django_prometheus.cache.metrics as cache_metrics
    import django_prometheus.db.metrics as db_metrics
    from django_prometheus.middleware import Metrics
    from prometheus_client.metrics import MetricWrapperBase

    import apps.core.metrics as platform_metrics
    import apps.rollouts.metrics as rollout_metrics

    modules = (platform_metrics, rollout_metrics, db_metrics, cache_metrics)
    namespaces = [vars(module) for module in modules]
    namespaces.append(vars(Metrics.get_instance()))
    families = [
        family
        for namespace in namespaces
        for metric in namespace.values()
        if isinstance(metric, MetricWrapperBase)
        for family in metric.describe()
    ]
    families += platform_metrics.QueueDepthCollector("memory://", []).collect()
    return set().union(*(_sample_names(family.name, family.type) for family in families))


# --- docker-compose.yml --------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(value: str) -> str:
    """A compose value with its ${VAR:-default} substitutions at their defaults."""
    return _VARIABLE.sub(lambda match: match.group(3) if match.group(2) == "-" else "set", value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def dependencies(service: dict) -> dict[str, str]:
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def volume_mounts(service: dict) -> Iterator[tuple[str, str, str]]:
    """(type, source, target) of each of the service's volumes."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            yield volume["type"], volume.get("source", ""), volume["target"]
            continue
        source, _, target = volume.partition(":")
        if not target:
            yield "volume", "", source
            continue
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        yield kind, source, target.split(":")[0]


def test_compose_defines_the_whole_stack(compose):
    stack = {
        "postgres",
        "redis",
        "migrate",
        "web",
        "grpc",
        "worker",
        "beat",
        "nginx",
        "prometheus",
        "grafana",
    }
    assert set(services(compose)) >= stack


def test_compose_references_only_defined_services_volumes_and_networks(compose):
    declared_volumes = set(compose.get("volumes") or {})
    declared_networks = set(compose.get("networks") or {}) | {"default"}
    for name, service in services(compose).items():
        for dependency, condition in dependencies(service).items():
            assert dependency in services(compose), f"{name} depends on undefined {dependency}"
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            target = services(compose)[dependency]
            if condition == "service_healthy":
                assert not target.get("healthcheck", {}).get("disable"), f"{dependency} has no health"
            if condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is not a one-shot service"
        for kind, source, _ in volume_mounts(service):
            if kind == "volume" and source:
                assert source in declared_volumes, f"{name} mounts undeclared volume {source}"
        networks = service.get("networks", [])
        for network in networks if isinstance(networks, list) else networks.keys():
            assert network in declared_networks, f"{name} joins undeclared network {network}"


def test_compose_bind_mounts_files_that_exist(compose):
    for name, service in services(compose).items():
        for kind, source, target in volume_mounts(service):
            if kind != "bind":
                continue
            path = (COMPOSE_FILE.parent / source).resolve()
            if path == DEPLOY / "certs":
                # Made on each machine by the script; only its .gitignore is in the repository.
                assert CERT_SCRIPT.exists() and os.access(CERT_SCRIPT, os.X_OK)
                assert 'CERT_DIR="${CERT_DIR:-deploy/certs}"' in CERT_SCRIPT.read_text()
                continue
            assert path.exists(), f"{name} mounts {source} at {target}, which is not in the repository"


def test_every_long_running_service_has_a_health_check(compose):
    for name, service in services(compose).items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if check.get("disable"):
            assert service.get("restart") == "no", f"{name} runs for good but has no health check"
        else:
            assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name


def test_the_worker_service_can_be_scaled(compose):
    worker = services(compose)["worker"]
    assert "container_name" not in worker, "docker compose up --scale worker=N needs no container_name"
    assert "ports" not in worker, "a fixed host port would clash between worker replicas"
    assert "hostname" not in worker, "each worker's node name comes from its own hostname"
    assert "-Q" in worker["command"] and worker["command"][worker["command"].index("-Q") + 1] == (
        "validation,jobs,default,shadow"
    )


def test_web_and_worker_keep_metrics_on_a_tmpfs(compose):
    for name in ("web", "worker"):
        service = services(compose)[name]
        folder = environment(service)["PROMETHEUS_MULTIPROC_DIR"]
        assert [mount.split(":")[0] for mount in service["tmpfs"]] == [folder], name
    assert environment(services(compose)["worker"])["WORKER_METRICS_PORT"] == "9100"
    for name in ("migrate", "beat"):  # their folder would not exist
        assert "PROMETHEUS_MULTIPROC_DIR" not in environment(services(compose)[name])


def test_web_runs_production_settings_behind_the_tls_proxy(compose):
    env = environment(services(compose)["web"])
    assert env["DJANGO_SETTINGS_MODULE"] == "mlplatform.settings.production"
    assert env["SECURE_SSL_REDIRECT"] == "True"
    assert env["NUM_PROXIES"] == "1"
    assert services(compose)["web"]["command"][:1] == ["gunicorn"]
    assert "ports" not in services(compose)["web"], "web is reached through nginx only"


def test_metrics_are_open_to_prometheus_network_and_not_to_nginx(compose):
    backend = ipaddress.ip_network(interpolate(compose["networks"]["backend"]["ipam"]["config"][0]["subnet"]))
    allowed = [
        ipaddress.ip_network(net)
        for net in environment(services(compose)["web"])["METRICS_ALLOWED_NETWORKS"].split(",")
    ]
    assert backend in allowed
    assert "backend" in services(compose)["prometheus"]["networks"]
    assert "backend" not in services(compose)["nginx"]["networks"]


def test_prometheus_scrapes_the_web_and_every_worker_replica(compose):
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    web_targets = [target for group in jobs["web"]["static_configs"] for target in group["targets"]]
    assert web_targets == ["web:8000"]
    assert "web" in environment(services(compose)["web"])["ALLOWED_HOSTS"].split(",")
    (discovery,) = jobs["worker"]["dns_sd_configs"]
    assert discovery["names"] == ["worker"] and discovery["type"] == "A"
    assert str(discovery["port"]) == environment(services(compose)["worker"])["WORKER_METRICS_PORT"]
    mounts = {source: target for _, source, target in volume_mounts(services(compose)["prometheus"])}
    assert mounts["./deploy/prometheus"] == "/etc/prometheus"


def test_the_grpc_server_is_reached_through_nginx_and_scraped_on_its_metrics_port(compose):
    grpc = services(compose)["grpc"]
    env = environment(grpc)
    assert grpc["command"] == ["python", "manage.py", "grpcserver"]
    assert env["DJANGO_SETTINGS_MODULE"] == "mlplatform.settings.production"
    assert env["NUM_PROXIES"] == "1", "nginx sends the client's address in x-forwarded-for"
    assert "ports" not in grpc, "grpc is reached through nginx only"
    assert {"edge", "backend"} <= set(grpc["networks"])
    assert {env["GRPC_PORT"], env["GRPC_METRICS_PORT"]} <= set(grpc["expose"])
    assert "PROMETHEUS_MULTIPROC_DIR" not in env, "one process: its own registry"
    assert f"127.0.0.1:{env['GRPC_PORT']}" in " ".join(grpc["healthcheck"]["test"])
    conf = NGINX_CONF.read_text()
    assert f"grpc://grpc:{env['GRPC_PORT']}" in conf
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"]}
    (discovery,) = jobs["grpc"]["dns_sd_configs"]
    assert discovery["names"] == ["grpc"] and str(discovery["port"]) == env["GRPC_METRICS_PORT"]


def test_nginx_passes_grpc_over_tls_with_http2():
    conf = NGINX_CONF.read_text()
    assert re.search(r"listen 443 ssl http2\b", conf)
    (grpc_location,) = re.findall(r"location ~ \^/\(([^)]*)\)/ \{([^}]*)\}", conf)
    services_passed, body = grpc_location
    assert services_passed.replace("\\", "").split("|") == [
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    assert "grpc_pass $mlp_grpc_upstream;" in body
    assert "grpc_set_header X-Forwarded-For $remote_addr;" in body
    assert "grpc_set_header X-Request-ID $mlp_request_id;" in body


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose):
    (source,) = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml")["providers"]
    mounts = {source: target for _, source, target in volume_mounts(services(compose)["grafana"])}
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    for kind in ("datasources", "dashboards"):
        assert mounts[f"./deploy/grafana/provisioning/{kind}"] == f"/etc/grafana/provisioning/{kind}"


# --- nginx -------------------------------------------------------------------------------


def _size_in_bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", size).groups()
    return int(number) * 1024 ** " kmg".index(unit.lower() or " ")


def test_nginx_terminates_tls_redirects_and_sends_the_scheme(compose, settings):
    conf = NGINX_CONF.read_text()
    assert re.search(r"listen 443 ssl\b", conf)
    assert re.search(
        r"listen 80\b[^;]*;\s*server_name _;[\s\S]*return 301 https://\$host\$request_uri;", conf
    )
    hsts = re.search(r'add_header Strict-Transport-Security "max-age=(\d+)[^"]*" always;', conf)
    assert hsts and int(hsts.group(1)) >= 31536000
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert re.search(r"location \^~ /metrics \{[^}]*return 404;", conf), "/metrics must not be public"
    body_limit = _size_in_bytes(re.search(r"client_max_body_size (\w+);", conf).group(1))
    assert body_limit >= max(settings.MODEL_UPLOAD_MAX_BYTES, settings.JOB_MAX_BYTES)
    mounts = {source: target for _, source, target in volume_mounts(services(compose)["nginx"])}
    assert mounts["./deploy/certs"] == "/etc/nginx/certs"
    assert "ssl_certificate /etc/nginx/certs/tls.crt;" in conf
    assert "ssl_certificate_key /etc/nginx/certs/tls.key;" in conf


def test_nginx_accepts_its_configuration_with_a_certificate_from_the_script(tmp_path):
    nginx = require_tool("nginx")
    env = {**os.environ, "CERT_DIR": str(tmp_path / "certs")}
    made = subprocess.run(["bash", str(CERT_SCRIPT)], env=env, capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    # The container's paths, moved to this machine (Debian's nginx has no `nginx` user).
    conf = NGINX_CONF.read_text().replace("/etc/nginx/certs", str(tmp_path / "certs"))
    conf = conf.replace("user nginx;", "").replace("/var/run/nginx.pid", str(tmp_path / "nginx.pid"))
    (tmp_path / "nginx.conf").write_text(conf)
    result = run(nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr")
    assert result.returncode == 0, result.stderr


# --- Prometheus --------------------------------------------------------------------------


def test_prometheus_config_passes_promtool():
    result = run(require_tool("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_alert_rules_pass_promtool():
    result = run(require_tool("promtool"), "check", "rules", "alerts.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests():
    result = run(require_tool("promtool"), "test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    cases = [
        case
        for test in load_yaml(PROMETHEUS_DIR / "alerts_test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in alert_expressions():
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == alert]
        assert any(expected), f"no test where {alert} fires"
        assert not all(expected), f"no test where {alert} stays quiet"


def test_the_required_alerts_exist_with_a_severity_and_a_summary():
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    expressions = alert_expressions()
    assert "django_http_responses_total_by_status_view_method_total" in expressions["MlplatformHighErrorRate"]
    assert "histogram_quantile(0.95" in expressions["MlplatformPredictLatencyHigh"]
    assert "deriv(mlplatform_queue_depth[10m])" in expressions["MlplatformQueueGrowing"]
    assert 'up{job="worker"} == 0' in expressions["MlplatformWorkerDown"]
    assert "rate(mlplatform_throttled_total[5m])" in expressions["MlplatformThrottlingSpike"]


def test_alerts_name_only_metrics_the_platform_exports():
    exported = exported_metric_names() | PROMETHEUS_SERIES
    for alert, expr in alert_expressions().items():
        names = promql_metric_names(expr)
        assert names, alert
        assert names <= exported, f"{alert} names unknown metrics: {names - exported}"


# --- Grafana -------------------------------------------------------------------------------


def test_dashboard_parses_and_every_panel_has_queries():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = list(dashboard_panels(dashboard))
    assert len(panels) >= 10
    ids = [panel["id"] for panel in dashboard["panels"]] + [panel["id"] for panel in panels]
    assert len(set(ids)) == len({id(panel) for panel in [*dashboard["panels"], *panels]})
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target["datasource"]["type"] == "prometheus", panel["title"]


def test_dashboard_shows_what_operators_need():
    queries = dashboard_queries()

    def queried(pattern: str) -> bool:
        return any(re.search(pattern, query) for query in queries)

    assert queried(r"rate\(django_http_requests_total_by_view_transport_method_total")  # request rate
    assert queried(r'status=~"5\.\."')  # error rate
    assert queried(r"histogram_quantile\(0\.95, sum by \(model, version, le\) \(rate\(mlplatform_inference_")
    assert queried(r"rate\(mlplatform_job_items_total")  # job throughput
    assert queried(r"mlplatform_queue_depth")
    assert queried(r"mlplatform_model_sessions_loaded")
    assert queried(r"rate\(mlplatform_throttled_total")


def test_dashboard_names_only_metrics_the_platform_exports():
    names = dashboard_metric_names()
    assert {"mlplatform_inference_seconds_bucket", "mlplatform_queue_depth"} <= names
    unknown = names - exported_metric_names()
    assert not unknown, f"the dashboard queries metrics nothing exports: {unknown}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.95, sum by (model, version, le) (rate(mlplatform_inference_seconds_bucket{stage="infer", model=~"$model"}[$__rate_interval])))',  # noqa: E501
            {"mlplatform_inference_seconds_bucket"},
        ),
        ('absent(up{job="worker"} == 1)', {"up"}),
        ("absent(a_metric) and on () (count(up == 1) > 0)", {"a_metric", "up"}),
        (
            "sum by (source) (rate(x_sum[5m])) / sum by (source) (rate(x_count[5m])) * 60",
            {"x_sum", "x_count"},
        ),
        (
            'label_values(mlplatform_predictions_total{model=~"$model"}, version)',
            {"mlplatform_predictions_total"},
        ),
        ("label_values(model)", set()),
        ("max(depth offset 1h) > 1e3", {"depth"}),
    ],
)
def test_promql_metric_names_finds_metrics_and_nothing_else(expr, names):
    assert promql_metric_names(expr) == names


def test_view_names_in_alerts_and_dashboard_are_url_names():
    """django-prometheus labels requests with the URL name: a renamed URL must not leave an
    alert or a panel watching nothing."""
    from django.urls import reverse

    texts = [*alert_expressions().values(), *dashboard_queries()]
    views = {view for text in texts for view in re.findall(r'view="([^"]+)"', text)}
    excluded = {
        name for text in texts for names in re.findall(r'view!~"([^"]+)"', text) for name in names.split("|")
    }
    assert views == {"inference:predict"} and excluded == {"healthz", "readyz", "metrics"}
    reverse("inference:predict", kwargs={"name": "any"})
    for name in excluded:
        reverse(name)
