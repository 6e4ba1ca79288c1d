"""What operators deploy (`deploy/`, the Dockerfile), checked against the code.

Every file in deploy/ is parsed. Each environment variable named there is a settings key
`marvin config check` accepts (MARVIN_<SECTION>__<KEY>, with the value given, on the config
file the deployment mounts) or a secret Marvin reads; each port is `slack.port` and each
HTTP path one `marvin serve` routes; the tokens `serve` needs are provided; the image tags,
labels and resource requests agree with the package and with `make bench`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from marvin.config import CONFIG_ENV, Settings, load_settings
from marvin.environments import DEFAULT as DEFAULT_ENVIRONMENTS
from marvin.ofrep import ENV_VARIABLE as OFREP_TOKEN
from marvin.slack.secrets import PLACEHOLDER_CHANNEL, SlackSecrets, missing_for_serve
from marvin.slack.server import build_bot
from marvin.store.migrate import MIGRATIONS_ENV
from marvin.wiring import close

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ENVIRONMENTS = [env.variable for env in DEFAULT_ENVIRONMENTS]
# `make bench`, the busy hour (20-200 commands/s, SQLite and PostgreSQL, Slack fast and
# slow): Marvin's peak RSS was 100-111 MB.
BENCH_PEAK_RSS_BYTES = 111.4e6

# What Marvin reads from its environment besides MARVIN_<SECTION>__<KEY> overrides.
SECRETS = {
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "GITLAB_TOKEN",
    *(f"GITLAB_TOKEN_{env}" for env in ENVIRONMENTS),
    "UNLEASH_ADMIN_TOKEN",
    *(OFREP_TOKEN.format(env) for env in ENVIRONMENTS),
}
OTHER_VARIABLES = {CONFIG_ENV, MIGRATIONS_ENV}
# Plausible values for what deploy files leave to the operator's secrets.
PLACEHOLDERS = {
    "SLACK_BOT_TOKEN": "xoxb-deploy-test",
    "SLACK_APP_TOKEN": "xapp-deploy-test",
    "SLACK_SIGNING_SECRET": "deploy-test-signing-secret",
}
KNOWN_FILES = {
    "compose.yaml",
    "config.yaml",
    "env.example",
    "kubernetes/kustomization.yaml",
    "kubernetes/deployment.yaml",
    "kubernetes/service.yaml",
    "kubernetes/poddisruptionbudget.yaml",
    "kubernetes/configmap.yaml",
    "kubernetes/secret.example.yaml",
}


# --- reading the files ----------------------------------------------------------------------


def yaml_file(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def env_lines(path: Path) -> dict[str, tuple[str, bool]]:
    """KEY=VALUE lines: each name with its value and whether it is commented out (a
    commented-out `# GITLAB_TOKEN=` still names a variable)."""
    found: dict[str, tuple[str, bool]] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^(#?)\s*([A-Z][A-Z0-9_]*)=(\S*)", line.strip())
        if match:
            found[match.group(2)] = (match.group(3), bool(match.group(1)))
    return found


def env_file(path: Path) -> dict[str, str]:
    return {name: value for name, (value, _) in env_lines(path).items()}


def env_file_set(path: Path) -> dict[str, str]:
    """Only the lines that are not comments: what the container gets."""
    return {name: value for name, (value, off) in env_lines(path).items() if not off}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml_file(DEPLOY / "compose.yaml")
    return data


def compose_marvin() -> dict[str, Any]:
    services = compose()["services"]
    found = [s for s in services.values() if str(s.get("image", "")).startswith("marvin")]
    assert len(found) == 1, "compose.yaml runs exactly one Marvin service"
    service: dict[str, Any] = found[0]
    return service


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def manifests() -> Iterator[dict[str, Any]]:
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield doc


def manifest(kind: str) -> dict[str, Any]:
    found = [m for m in manifests() if m["kind"] == kind]
    assert len(found) == 1, f"one {kind} in deploy/kubernetes"
    return found[0]


def k8s_marvin() -> dict[str, Any]:
    containers = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    found = [c for c in containers if str(c["image"]).startswith("marvin")]
    assert len(found) == 1
    container: dict[str, Any] = found[0]
    return container


def k8s_secret() -> dict[str, str]:
    return {str(k): str(v) for k, v in manifest("Secret")["stringData"].items()}


def uninterpolated(value: str) -> str:
    """Compose's ${VAR} and ${VAR:?message} replaced by a plausible value."""
    return re.sub(r"\$\{[^}]*\}", "deploytest", value)


# --- names, values, ports and paths, against the code ------------------------------------------


def settings_key(name: str) -> str | None:
    """The dotted settings key a MARVIN_<SECTION>__<KEY> variable overrides, or None."""
    if not name.startswith("MARVIN_") or "__" not in name:
        return None
    parts = name.removeprefix("MARVIN_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return None
            model = annotation
    return ".".join(parts)


def known_variable(name: str) -> bool:
    return name in SECRETS or name in OTHER_VARIABLES or settings_key(name) is not None


def load_with(
    monkeypatch: pytest.MonkeyPatch, config: Path, env: dict[str, str]
) -> tuple[Settings, list[str]]:
    """`marvin config check --serve` with this environment: the settings, and what serve
    would still miss."""
    for name in list(os.environ):
        if name.upper().startswith(("MARVIN_", "SLACK_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(config)
    missing = missing_for_serve(settings, SlackSecrets.from_env(env))
    return settings, missing


async def served_paths() -> list[re.Pattern[str]]:
    """Every path `marvin serve` routes, from the very app it serves."""
    secrets = SlackSecrets(SecretStr("xoxb-x"), SecretStr("s"), None)
    bot = build_bot(Settings(database={"url": "sqlite+aiosqlite:///:memory:"}), secrets)
    try:
        canonical = {
            route.resource.canonical for route in bot.web.router.routes() if route.resource
        }
    finally:
        await close(bot.services)
    return [re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", c) + "$") for c in canonical]


def urls_in(command: Any) -> list[tuple[int, str]]:
    text = " ".join(command) if isinstance(command, list) else str(command)
    return [
        (int(port), path)
        for port, path in re.findall(r"https?://(?:127\.0\.0\.1|localhost):(\d+)(/[^\s'\"]*)", text)
    ]


def quantity(value: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value.removesuffix(unit)) * factor
    return float(value)


# --- every file --------------------------------------------------------------------------------


def test_every_file_in_deploy_is_checked() -> None:
    files = {
        str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file() and p.name != ".env"
    }
    assert files == KNOWN_FILES, "a new file in deploy/ needs its checks here"
    for name in files:
        path = DEPLOY / name
        if name.endswith(".yaml"):
            assert list(yaml.safe_load_all(path.read_text())), name
        else:
            assert env_file(path), name


def test_the_names_marvin_reads_are_in_its_code() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "marvin").rglob("*.py"))
    for name in SECRETS:
        literal = name
        if name.startswith("GITLAB_TOKEN_"):
            literal = "GITLAB_TOKEN_"
        if name.startswith("MARVIN_OFREP_TOKEN_"):
            literal = "MARVIN_OFREP_TOKEN_"
        assert literal in source, f"{name}: Marvin does not read it"


# --- compose -----------------------------------------------------------------------------------


def test_compose_names_only_variables_marvin_reads() -> None:
    service = compose_marvin()
    for name in compose_environment(service):
        assert known_variable(name), f"compose.yaml: Marvin does not read {name}"
    assert service.get("env_file") in (".env", [".env"])
    interpolated = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    for name in env_file(DEPLOY / "env.example"):
        assert known_variable(name) or name in interpolated, (
            f"env.example: {name} is neither read by Marvin nor used by compose.yaml"
        )


def test_compose_runs_what_serve_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose_marvin()
    env = {k: uninterpolated(v) for k, v in compose_environment(service).items()}
    for name, value in env_file_set(DEPLOY / "env.example").items():
        env.setdefault(name, value or PLACEHOLDERS.get(name, "deploytest"))
    mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"])
    config = (DEPLOY / mounts[env[CONFIG_ENV]]).resolve()
    assert config == DEPLOY / "config.yaml"
    settings, missing = load_with(monkeypatch, config, env)
    # The channel's id is the operator's to set: serve refuses the example's placeholder.
    assert settings.production_channel.id == PLACEHOLDER_CHANNEL
    assert [m for m in missing if "production_channel.id" not in m] == []
    assert settings.slack.mode == "socket", "compose runs Socket Mode: no public URL"
    assert settings.database.url.startswith("postgresql+asyncpg://")
    assert settings.database.migrate_on_start is True


async def test_compose_ports_and_paths_are_the_ones_serve_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = compose_marvin()
    env = {k: uninterpolated(v) for k, v in compose_environment(service).items()}
    env.update(PLACEHOLDERS)
    settings, _ = load_with(monkeypatch, DEPLOY / "config.yaml", env)
    port = settings.slack.port
    published = [str(p).rsplit(":", 1)[-1] for p in service.get("ports", [])]
    assert published and all(p == str(port) for p in published)
    assert [str(p).split(":")[0] for p in service["ports"]] == ["127.0.0.1"], (
        "published on loopback only"
    )
    paths = await served_paths()
    checks = urls_in(service["healthcheck"]["test"])
    assert checks, "Marvin's healthcheck asks /healthz"
    for check_port, path in checks:
        assert check_port == port
        assert path == "/healthz" and any(p.match(path) for p in paths)


def test_compose_has_postgresql_health_checks_and_a_read_only_root() -> None:
    services = compose()["services"]
    service = compose_marvin()
    (database,) = [name for name, s in services.items() if "postgres" in str(s.get("image"))]
    assert service["depends_on"][database]["condition"] == "service_healthy"
    assert "healthcheck" in services[database]
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["image"] == f"marvin:{VERSION}"


# --- kubernetes --------------------------------------------------------------------------------


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    secret = k8s_secret()
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == manifest("Secret")["metadata"]["name"]
            assert ref["key"] in secret, f"the Secret has no {ref['key']}"
            value = secret[ref["key"]]
            if value and "..." not in value:
                env[item["name"]] = value
            elif not ref.get("optional"):
                env[item["name"]] = PLACEHOLDERS.get(item["name"], "deploytest")
    return env


def k8s_config(tmp_path: Path, container: dict[str, Any]) -> Path:
    """The config file the container reads: MARVIN_CONFIG, through its mount, in the
    ConfigMap."""
    env = {i["name"]: i.get("value") for i in container["env"]}
    wanted = Path(env[CONFIG_ENV])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == wanted.parent]
    volumes = manifest("Deployment")["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    configmap = manifest("ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    path = tmp_path / wanted.name
    path.write_text(configmap["data"][wanted.name])
    return path


def test_kubernetes_names_only_variables_marvin_reads() -> None:
    for item in k8s_marvin()["env"]:
        assert known_variable(item["name"]), f"deployment.yaml: Marvin does not read {item['name']}"
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] == item["name"], "each secret under the name Marvin reads"
    for name in k8s_secret():
        assert known_variable(name), f"secret.example.yaml: Marvin does not read {name}"


def test_kubernetes_runs_what_serve_accepts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    container = k8s_marvin()
    settings, missing = load_with(monkeypatch, k8s_config(tmp_path, container), k8s_env(container))
    assert settings.production_channel.id == PLACEHOLDER_CHANNEL
    assert [m for m in missing if "production_channel.id" not in m] == []
    assert settings.database.url.startswith("postgresql+asyncpg://"), "replicas need PostgreSQL"
    assert settings.database.migrate_on_start is True


async def test_kubernetes_ports_and_paths_are_the_ones_serve_uses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    container = k8s_marvin()
    settings, _ = load_with(monkeypatch, k8s_config(tmp_path, container), k8s_env(container))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [settings.slack.port]
    paths = await served_paths()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert any(p.match(get["path"]) for p in paths)
        assert get["port"] in ports or get["port"] == settings.slack.port
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == settings.slack.port
    assert any(p.match(annotations["prometheus.io/path"]) for p in paths)
    service = manifest("Service")
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports or port["targetPort"] == settings.slack.port


def test_kubernetes_two_replicas_a_budget_and_one_selector() -> None:
    deployment = manifest("Deployment")
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    budget = manifest("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["minAvailable"] < spec["replicas"]
    assert manifest("Service")["spec"]["selector"].items() <= labels.items()


def test_kubernetes_resources_are_sized_from_the_benchmark() -> None:
    resources = k8s_marvin()["resources"]
    memory = quantity(resources["requests"]["memory"])
    limit = quantity(resources["limits"]["memory"])
    assert memory >= BENCH_PEAK_RSS_BYTES, "requested below the measured peak"
    assert limit >= 2 * BENCH_PEAK_RSS_BYTES, "no room above the measured peak"
    assert "cpu" in resources["requests"]


def test_kubernetes_runs_as_the_image_user_on_a_read_only_root() -> None:
    container = k8s_marvin()
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user, "the image's USER is numeric (runAsNonRoot can check it)"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/data"} <= mounted


def test_kubernetes_image_is_this_version() -> None:
    assert k8s_marvin()["image"] == f"marvin:{VERSION}"
    kustomization = yaml_file(KUBERNETES / "kustomization.yaml")
    assert [i["newTag"] for i in kustomization["images"] if i["name"] == "marvin"] == [VERSION]
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert present - listed == {"secret.example.yaml"}, "every manifest but the example Secret"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here")
def test_kustomize_renders_the_manifests() -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(done.stdout) if d)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]


# --- the image ---------------------------------------------------------------------------------


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_the_image_environment_is_one_marvin_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in dockerfile_env().items() if k.startswith("MARVIN_")}
    for name in env:
        assert known_variable(name), f"Dockerfile: Marvin does not read {name}"
    env[CONFIG_ENV] = str(ROOT / "config.example.yaml")
    env.pop(MIGRATIONS_ENV)
    settings, _ = load_with(monkeypatch, ROOT / "config.example.yaml", env)
    assert settings.database.url == "sqlite+aiosqlite:////data/marvin.db"
    assert settings.database.migrate_on_start is True


def test_the_image_version_label_and_port_match_the_code() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^ARG VERSION={re.escape(VERSION)}$", text, re.M), "ARG VERSION default"
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    assert re.search(rf"^EXPOSE {Settings().slack.port}$", text, re.M)
    assert f"'{Settings().slack.port}'" in text, "the HEALTHCHECK's default port"
    assert "/healthz" in text


def test_the_build_context_is_only_what_the_dockerfile_copies() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "everything is left out unless named"
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied: set[str] = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied.update(w.rstrip("/") for w in words[1:-1] if not w.startswith("--"))
    assert kept == copied
    for generated in ("**/__pycache__", "**/*.db"):
        assert generated in ignore
