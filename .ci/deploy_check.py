"""Checks of the deployment artefacts that no tool does for us (run by .ci/deploy-check).

- every rendered Kubernetes object validates against the Kubernetes API schemas (strict), and
  KEDA's ScaledObject against a small schema here; every role has a Deployment with probes,
  resources and a non-root, read-only container; no Secret carries anything but placeholders;
- deploy/compose.yaml refers only to things it defines (services, volumes, secrets, configs,
  files, variables of deploy/env.example), runs real `carrierhub` commands and roles, and
  Prometheus scrapes every role;
- the Dockerfile's dependency layer copies every crate's manifest;
- the dashboard's PromQL parses and names only metrics the code exports; the alerts' likewise,
  except the request metrics listed in PENDING_METRICS.
"""

import argparse
import base64
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = ["api", "worker", "relay", "webhooks", "warehouse"]
# `carrierhub` subcommands a deployment may run.
COMMANDS = {"serve", "migrate", "keys", "dlq", "ingest", "replay", "mapping", "errors",
            "submissions", "portfolio", "demo", "gen"}
# Written into the alerts ahead of the API exporting them (docs/deploy.md, "Metrics not
# exported yet"); the dashboard may not use them.
PENDING_METRICS = set()

errors = []


def fail(message):
    errors.append(message)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --- Kubernetes -----------------------------------------------------------------------------

SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"],
                                   "properties": {"name": {"type": "string"}}},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "metadata": {"type": "object",
                                         "additionalProperties": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}
NATS_JETSTREAM_KEYS = {"natsServerMonitoringEndpoint", "account", "stream", "consumer",
                       "lagThreshold", "activationLagThreshold", "useHttps"}


def check_kubernetes(path):
    objects = load_all(path)
    name = os.path.basename(path)
    by_kind = {}
    for obj in objects:
        kind = obj.get("kind")
        ident = f"{name}: {kind}/{obj.get('metadata', {}).get('name')}"
        by_kind.setdefault(kind, {})[obj["metadata"]["name"]] = obj
        if kind == "ScaledObject":
            try:
                jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
            except jsonschema.ValidationError as e:
                fail(f"{ident}: {e.message}")
                continue
            for trigger in obj["spec"]["triggers"]:
                if trigger["type"] == "nats-jetstream":
                    meta = trigger["metadata"]
                    unknown = set(meta) - NATS_JETSTREAM_KEYS
                    missing = {"natsServerMonitoringEndpoint", "stream", "consumer"} - set(meta)
                    if unknown or missing:
                        fail(f"{ident}: nats-jetstream trigger: unknown {sorted(unknown)}, missing {sorted(missing)}")
                    if meta.get("stream") != "carrierhub-messages" or meta.get("consumer") != "pipeline":
                        fail(f"{ident}: the workers consume stream carrierhub-messages, consumer pipeline")
            continue
        try:
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            fail(f"{ident}: {getattr(e, 'message', e)}")
        if kind == "Secret":
            for key, value in {**obj.get("data", {}), **obj.get("stringData", {})}.items():
                text = value if key in obj.get("stringData", {}) else base64.b64decode(value).decode()
                if "CHANGE-ME" not in text:
                    fail(f"{ident}: {key} is not a placeholder: secrets are never committed")

    deployments = by_kind.get("Deployment", {})
    for role in ROLES:
        deployment = deployments.get(f"carrierhub-{role}")
        if deployment is None:
            fail(f"{name}: no Deployment carrierhub-{role}")
            continue
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        where = f"{name}: Deployment carrierhub-{role}"
        if container.get("args", [])[:3] != ["serve", "--role", role]:
            fail(f"{where}: args should start serve --role {role}")
        if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            fail(f"{where}: liveness probe is not /healthz")
        ready = container.get("readinessProbe", {}).get("httpGet", {}).get("path")
        # Every role serves /readyz: the API on its port, the others on their admin port.
        if ready != "/readyz":
            fail(f"{where}: readiness probe {ready}")
        if not container.get("resources", {}).get("requests") or not container.get("resources", {}).get("limits"):
            fail(f"{where}: resources need requests and limits")
        security = container.get("securityContext", {})
        if not pod.get("securityContext", {}).get("runAsNonRoot") or not security.get("readOnlyRootFilesystem") \
                or security.get("allowPrivilegeEscalation") is not False:
            fail(f"{where}: must run as non-root with a read-only root filesystem, no privilege escalation")
    for kind, wanted in [("Service", "carrierhub-api"), ("HorizontalPodAutoscaler", "carrierhub-api"),
                         ("PodDisruptionBudget", "carrierhub-api"), ("Job", "carrierhub-migrate"),
                         ("ScaledObject", "carrierhub-worker")]:
        if wanted not in by_kind.get(kind, {}):
            fail(f"{name}: no {kind} {wanted}")
    print(f"   {name}: {len(objects)} objects")


# --- Compose --------------------------------------------------------------------------------

def check_compose():
    deploy = os.path.join(ROOT, "deploy")
    path = os.path.join(deploy, "compose.yaml")
    with open(path) as f:
        text = f.read()
    compose = yaml.safe_load(text)
    services = compose.get("services", {})
    volumes = set(compose.get("volumes", {}) or {})
    secrets = set(compose.get("secrets", {}) or {})
    configs = set(compose.get("configs", {}) or {})
    with open(os.path.join(deploy, "env.example")) as f:
        example_vars = {line.split("=", 1)[0].lstrip("# ").strip() for line in f if "=" in line}
    for var in set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text)):
        if var not in example_vars:
            fail(f"compose.yaml: ${{{var}}} is not in deploy/env.example")
    for name, config in (compose.get("configs") or {}).items():
        if "file" in config and not os.path.exists(os.path.join(deploy, config["file"])):
            fail(f"compose.yaml: config {name}: no file {config['file']}")
    for name, secret in (compose.get("secrets") or {}).items():
        if "file" in secret:
            fail(f"compose.yaml: secret {name} comes from a file in the repository; use deploy/.env")
    for name, service in services.items():
        where = f"compose.yaml: service {name}"
        if "image" not in service and "build" not in service:
            fail(f"{where}: neither image nor build")
        depends = service.get("depends_on", {})
        for dep, how in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            if dep not in services:
                fail(f"{where}: depends on undefined service {dep}")
                continue
            condition = (how or {}).get("condition", "service_started")
            if condition not in ("service_started", "service_healthy", "service_completed_successfully"):
                fail(f"{where}: unknown condition {condition}")
            dep_image = services[dep].get("image", "")
            if condition == "service_healthy" and "healthcheck" not in services[dep] \
                    and "carrierhub" not in dep_image:
                fail(f"{where}: waits for {dep} to be healthy, which has no healthcheck")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if ":" not in str(volume) and isinstance(volume, str):
                continue  # an anonymous volume
            if source.startswith((".", "/")):
                if source.startswith(".") and not os.path.exists(os.path.join(deploy, source)):
                    fail(f"{where}: mounts {source}, which does not exist")
            elif source not in volumes:
                fail(f"{where}: volume {source} is not defined")
        for secret in service.get("secrets", []):
            if (secret if isinstance(secret, str) else secret["source"]) not in secrets:
                fail(f"{where}: secret {secret} is not defined")
        for config in service.get("configs", []):
            if (config if isinstance(config, str) else config["source"]) not in configs:
                fail(f"{where}: config {config} is not defined")
        if "carrierhub" in service.get("image", "") and "entrypoint" not in service:
            command = service.get("command", [])
            if not command or command[0] not in COMMANDS:
                fail(f"{where}: `carrierhub {' '.join(command)}` is not a carrierhub command")
            if "--role" in command:
                for role in command[command.index("--role") + 1].split(","):
                    if role not in ROLES:
                        fail(f"{where}: unknown role {role}")
    for role in ROLES:
        service = services.get(role, {})
        if service.get("command", [])[:3] != ["serve", "--role", role]:
            fail(f"compose.yaml: no service `{role}` running serve --role {role}")
    for name in ("api", "worker"):
        if services.get(name, {}).get("deploy", {}).get("replicas", 1) < 2:
            fail(f"compose.yaml: {name} should run 2 replicas")
    prometheus = yaml.safe_load(open(os.path.join(deploy, "prometheus", "prometheus.yml")))
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    for role in ROLES:
        job = jobs.get(f"carrierhub-{role}")
        targets = json.dumps(job) if job else ""
        if not job or role not in targets:
            fail(f"prometheus.yml: no job carrierhub-{role} scraping the {role} service")
        elif str(8080 if role == "api" else 9090) not in targets:
            fail(f"prometheus.yml: carrierhub-{role} scrapes the wrong port")
    print(f"   compose.yaml: {len(services)} services")


# --- Dockerfile -----------------------------------------------------------------------------

def check_dockerfile():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    for manifest in sorted(glob.glob(os.path.join(ROOT, "crates", "*", "Cargo.toml"))):
        crate = os.path.relpath(os.path.dirname(manifest), ROOT)
        if not re.search(rf"^COPY {re.escape(crate)}/Cargo\.toml", dockerfile, re.M):
            fail(f"Dockerfile: the dependency layer does not copy {crate}/Cargo.toml")
        if os.path.exists(os.path.join(ROOT, crate, "build.rs")) and f"{crate}/build.rs" not in dockerfile:
            fail(f"Dockerfile: the dependency layer does not copy {crate}/build.rs")


# --- Metrics --------------------------------------------------------------------------------

def exported_metrics():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "crates", "*", "src", "**", "*.rs"), recursive=True):
        with open(path) as f:
            names.update(re.findall(r'(?:counter|gauge|histogram)!\(\s*"(carrierhub_[a-z0-9_]+)"', f.read()))
    return names


def base_name(metric):
    return re.sub(r"_(bucket|sum|count)$", "", metric)


def check_metrics(promtool):
    exported = exported_metrics()
    if not exported:
        fail("found no metric in crates/*/src")
    dashboards = glob.glob(os.path.join(ROOT, "deploy", "grafana", "dashboards", "*.json"))
    rules = []
    for path in dashboards:
        with open(path) as f:
            dashboard = json.load(f)
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for metric in re.findall(r"\bcarrierhub_[a-z0-9_]+", expr):
                    if base_name(metric) not in exported:
                        fail(f"{os.path.basename(path)}: panel '{panel['title']}' uses {metric}, which the code does not export")
                concrete = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$carrier", ".*")
                rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": concrete})
    with open(os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")) as f:
        alerts = yaml.safe_load(f)
    for group in alerts["groups"]:
        for rule in group["rules"]:
            for metric in re.findall(r"\bcarrierhub_[a-z0-9_]+", rule["expr"]):
                if base_name(metric) not in exported and base_name(metric) not in PENDING_METRICS:
                    fail(f"alerts.yml: {rule['alert']} uses {metric}, which the code does not export")
    # The dashboard's PromQL, parsed by promtool as recording rules.
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    result = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    if result.returncode != 0:
        fail("the dashboard's queries do not parse:\n" + result.stdout + result.stderr)
    print(f"   metrics: {len(exported)} exported, {len(rules)} dashboard queries parse")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--promtool", required=True)
    parser.add_argument("rendered", nargs="+", help="kustomize output to validate")
    args = parser.parse_args()
    for path in args.rendered:
        check_kubernetes(path)
    check_compose()
    check_dockerfile()
    check_metrics(args.promtool)
    if errors:
        for message in errors:
            print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    print("   deployment artefacts: all checks passed")


if __name__ == "__main__":
    main()
