"""The Kubernetes manifests (k8s/), rendered and checked offline.

Every overlay is built with the real kustomize (.tools/bin, from `make tools`) and
every object validated against the Kubernetes schemas that kubernetes-validate
bundles, strictly (unknown fields fail), for the oldest Kubernetes we support and
the newest the package knows. Then the project's own policies, measured against
the effective settings each overlay gives the workers (its ConfigMap and TOML file
loaded through the real Settings).
"""

from __future__ import annotations

import base64
import functools
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, SecretStr

from settlement.bootstrap import ROLES
from settlement.config import Settings, load_settings
from tests.unit.dockerfile import stages

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = Path(os.environ.get("SETTLEMENT_KUSTOMIZE", ROOT / ".tools" / "bin" / "kustomize"))
OVERLAYS = ("dev", "prod")
OLDEST_KUBERNETES = "1.30"  # docs/deploy.md: CronJob timeZone, Job podFailurePolicy
KUBERNETES = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
IMAGE = "ghcr.io/settlement/settlement"
# settlement/kafka/loop.py bounds every transactional call at txn_call_timeout_s + 5.
CALL_SLACK_S = 5
Doc = dict[str, Any]


@functools.cache
def render(overlay: str) -> tuple[Doc, ...]:
    # Always fail, never skip, when kustomize is missing: a skipped policy test is a
    # hole nobody sees. `make test` and `make test-unit` build it first.
    if not KUSTOMIZE.is_file():
        pytest.fail(f"kustomize not found at {KUSTOMIZE}: run `make tools` (infra/tools.sh)")
    out = subprocess.run([str(KUSTOMIZE), "build", str(ROOT / "k8s" / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kustomize build {overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def one(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: tuple[Doc, ...], kind: str, prefix: str) -> Doc:
    """Generated ConfigMaps and Secrets carry a content-hash suffix."""
    found = [d for d in of_kind(docs, kind) if re.fullmatch(rf"{prefix}(-[a-z0-9]{{10}})?",
                                                            d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {prefix}, found {len(found)}"
    return found[0]


def pod_specs(docs: tuple[Doc, ...]) -> Iterator[tuple[str, Doc]]:
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            yield f"{d['kind']}/{d['metadata']['name']}", spec["template"]["spec"]


def containers(pod: Doc) -> list[Doc]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def secret_values(docs: tuple[Doc, ...]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode()
            for s in of_kind(docs, "Secret") for k, v in s.get("data", {}).items()}


@functools.cache
def effective_settings(overlay: str) -> Settings:
    """What a worker of this overlay runs with: its env (ConfigMap, Secret) and TOML file."""
    docs = render(overlay)
    env = {**named(docs, "ConfigMap", "settlement-env")["data"], **secret_values(docs)}
    toml = named(docs, "ConfigMap", "settlement-config")["data"]["settlement.toml"]
    assert env.pop("SETTLEMENT_CONFIG_FILE") == "/etc/settlement/settlement.toml"
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("SETTLEMENT_")]:
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "settlement.toml"
            config.write_text(toml)
            return load_settings(config)


def setting_field(env_name: str) -> Any:
    """SETTLEMENT_KAFKA__SASL_PASSWORD -> the pydantic field it sets (fails if none)."""
    assert env_name.startswith("SETTLEMENT_"), env_name
    model: type[BaseModel] = Settings
    parts = env_name.removeprefix("SETTLEMENT_").lower().split("__")
    for i, part in enumerate(parts):
        assert part in model.model_fields, f"{env_name}: no setting {part!r} in {model.__name__}"
        info = model.model_fields[part]
        if i == len(parts) - 1:
            return info
        sub = info.annotation
        assert isinstance(sub, type) and issubclass(sub, BaseModel), f"{env_name}: {part} is a leaf"
        model = sub
    raise AssertionError(env_name)


def is_secret(info: Any) -> bool:
    return SecretStr in (info.annotation, *get_args(info.annotation))


def workers(overlay: str) -> dict[str, Doc]:
    docs = render(overlay)
    return {role: one(docs, "StatefulSet", f"settlement-{role}") for role in ROLES}


def worker_container(sts: Doc) -> Doc:
    pod: Doc = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert isinstance(container, dict)
    return container


# -- schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_kubernetes(overlay: str, version: str) -> None:
    errors = []
    for doc in render(overlay):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_deploys_every_role_and_the_jobs(overlay: str) -> None:
    docs = render(overlay)
    assert set(workers(overlay)) == set(ROLES)
    assert not of_kind(docs, "Deployment"), "workers are StatefulSets: stable transactional ids"
    one(docs, "Job", "settlement-migrate")
    one(docs, "CronJob", "settlement-reconcile")
    (ns,) = of_kind(docs, "Namespace")
    assert all(d["metadata"].get("namespace") == ns["metadata"]["name"]
               for d in docs if d["kind"] != "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# -- settings and secrets --------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configmap_sets_only_real_settings_and_no_secrets(overlay: str) -> None:
    env = named(render(overlay), "ConfigMap", "settlement-env")["data"]
    for key in env:
        if key != "SETTLEMENT_CONFIG_FILE":
            assert not is_secret(setting_field(key)), f"{key} is a secret: it belongs in the Secret"
    effective_settings(overlay)  # the values parse as the workers will parse them


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_from_one_secret_and_no_real_value_is_shipped(overlay: str) -> None:
    docs = render(overlay)
    for where, pod in pod_specs(docs):
        for c in containers(pod):
            refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
            assert len(refs) == 1 and refs[0].startswith("settlement-secrets"), where
            literal = [e["name"] for e in c.get("env", []) if e["name"].startswith("SETTLEMENT_")]
            assert not [n for n in literal if is_secret(setting_field(n))], f"{where}: {literal}"
    values = secret_values(docs)
    for key in values:
        assert is_secret(setting_field(key)), f"{key} is not a secret setting"
    if overlay == "prod":
        assert not of_kind(docs, "Secret"), "prod's Secret is created in the cluster, not shipped"
    else:
        assert values and all("placeholder" in v for v in values.values())


# -- workers ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_role_runs_its_worker_with_the_pod_name_as_instance_id(overlay: str) -> None:
    for role, sts in workers(overlay).items():
        c = worker_container(sts)
        assert c["command"] == ["settlement"]
        assert c["args"] == ["worker", "--role", role, "--instance-id", "$(POD_NAME)"]
        assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} \
            in c["env"]
        assert sts["spec"]["podManagementPolicy"] == "Parallel"
        assert "replicas" not in sts["spec"], "the HPA owns replicas; apply must not reset them"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_expose_health_and_metrics_on_the_http_port(overlay: str) -> None:
    for role, sts in workers(overlay).items():
        c = worker_container(sts)
        assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}], role
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        notes = sts["spec"]["template"]["metadata"]["annotations"]
        assert notes == {"prometheus.io/scrape": "true", "prometheus.io/port": "8080",
                         "prometheus.io/path": "/metrics"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_outlasts_the_worst_drain(overlay: str) -> None:
    s = effective_settings(overlay)
    # expected drain, then send_offsets and commit both hanging until our own deadline
    worst = s.worker.drain_timeout_s + 2 * (s.kafka.txn_call_timeout_s + CALL_SLACK_S)
    for role, sts in workers(overlay).items():
        grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > worst, f"{role}: grace {grace}s <= worst drain {worst}s"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down_and_sized(overlay: str) -> None:
    docs = render(overlay)
    uid = int(next(i for i in stages((ROOT / "Dockerfile").read_text())[-1].instructions
                   if i.keyword == "USER").args.split(":")[0])
    images = set()
    for where, pod in pod_specs(docs):
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["serviceAccountName"] == "settlement", where
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid, where
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in containers(pod):
            what = f"{where}/{c['name']}"
            images.add(c["image"])
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, what
            assert csc["allowPrivilegeEscalation"] is False, what
            assert csc["capabilities"] == {"drop": ["ALL"]}, what
            assert not csc.get("privileged"), what
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"], what
    (sa,) = of_kind(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    (image,) = images  # one image for every role and job; the overlay sets its tag
    assert image.startswith(f"{IMAGE}:") and image != f"{IMAGE}:latest", image
    if overlay == "dev":
        assert image == f"{IMAGE}:dev"


# -- scaling and disruption ------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_scales_on_its_own_consumer_lag_within_its_partitions(overlay: str) -> None:
    docs, s = render(overlay), effective_settings(overlay)
    for role, sts in workers(overlay).items():
        hpa = one(docs, "HorizontalPodAutoscaler", f"settlement-{role}")["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                         "name": sts["metadata"]["name"]}
        (metric,) = hpa["metrics"]
        assert metric["type"] == "External"
        assert metric["external"]["metric"]["name"] == "kafka_consumergroup_lag"
        group = f"{s.worker.group_prefix}-{role}"  # the group bootstrap.build_worker joins
        assert metric["external"]["metric"]["selector"]["matchLabels"] == {"consumergroup": group}
        # a replica beyond the partition count would get no partition
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= s.topics.partitions, role


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_has_a_disruption_budget_that_still_allows_a_drain(overlay: str) -> None:
    docs = render(overlay)
    for role, sts in workers(overlay).items():
        pdb = one(docs, "PodDisruptionBudget", f"settlement-{role}")["spec"]
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert pdb["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        assert pod_labels["app.kubernetes.io/component"] == role
        floor = one(docs, "HorizontalPodAutoscaler", f"settlement-{role}")["spec"]["minReplicas"]
        if overlay == "prod":
            assert 1 <= pdb["minAvailable"] < floor, f"{role}: a node drain must be possible"
        else:
            assert pdb["maxUnavailable"] == 1, role


def test_dev_runs_one_replica_per_role_and_prod_several() -> None:
    for overlay, floor in (("dev", 1), ("prod", 3)):
        for role in ROLES:
            hpa = one(render(overlay), "HorizontalPodAutoscaler", f"settlement-{role}")
            assert hpa["spec"]["minReplicas"] == floor, (overlay, role)


def test_prod_pins_a_release_image() -> None:
    images = {c["image"] for _, pod in pod_specs(render("prod")) for c in containers(pod)}
    (image,) = images
    assert re.fullmatch(rf"{re.escape(IMAGE)}:\d+\.\d+\.\d+", image) or "@sha256:" in image, image


# -- network ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policy_lets_through_exactly_what_the_settings_need(overlay: str) -> None:
    docs, s = render(overlay), effective_settings(overlay)
    base = one(docs, "NetworkPolicy", "settlement")["spec"]
    assert base["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "settlement"}}
    assert base["policyTypes"] == ["Ingress", "Egress"]
    allowed = {(p["protocol"], p["port"]) for rule in base["egress"] for p in rule["ports"]}
    needed = {("TCP", int(b.rsplit(":", 1)[1])) for b in s.kafka.bootstrap_servers.split(",")}
    needed |= {("TCP", s.cassandra.port), ("UDP", 53), ("TCP", 53)}
    assert allowed == needed, f"egress {allowed} != what the settings use {needed}"
    (ingress,) = base["ingress"]
    assert ingress["from"] == [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    banks = one(docs, "NetworkPolicy", "settlement-gateway-banks")["spec"]
    assert banks["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert banks["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}]}]


# -- jobs ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migrate_job_creates_topics_then_migrates_the_keyspace(overlay: str) -> None:
    job = one(render(overlay), "Job", "settlement-migrate")["spec"]
    pod = job["template"]["spec"]
    assert [c["args"] for c in containers(pod)] == [["topics", "ensure"], ["db", "migrate"]]
    assert pod["restartPolicy"] == "Never" and job["backoffLimit"] >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reconcile_runs_daily_and_a_break_fails_the_job_without_retries(overlay: str) -> None:
    cron = one(render(overlay), "CronJob", "settlement-reconcile")["spec"]
    job = cron["jobTemplate"]["spec"]
    (c,) = job["template"]["spec"]["containers"]
    assert c["args"] == ["reconcile", "--date", "yesterday"]
    assert cron["concurrencyPolicy"] == "Forbid" and cron["failedJobsHistoryLimit"] >= 1
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    fail_on = [r["onExitCodes"] for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    # exit 1 = breaks found: no retry (same breaks again), the failed Job is the alert;
    # exit 2 = error: retried up to backoffLimit.
    assert fail_on == [{"containerName": c["name"], "operator": "In", "values": [1]}]
    assert job["backoffLimit"] >= 1
