"""The deployment files in deploy/ are valid, and they start processes that exist.

Offline and quick: Compose's own parser (when a Compose v2 is installed), the Kubernetes
schemas bundled with kubernetes-validate, ``kubectl kustomize`` and ``systemd-analyze``
(when installed), and cross-checks that every command the files run names a management
command, module or file of this repository, with flags its parser accepts.
"""

from __future__ import annotations

import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
DOCKERFILE = DEPLOY / "Dockerfile"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"

UNITS = ["tessera-web.service", "tessera-worker@.service", "tessera-scheduler.service"]
# The web process, exactly as the runtime contract (and docs/deployment.md) gives it.
WEB_COMMAND = ["gunicorn", "coordinator.wsgi:application", "--config", "deploy/gunicorn.conf.py"]
WORKER_ARGS = ["rundramatiq", "--processes", "2", "--threads", "4"]
# The settings every deployment must give (see docs/deployment.md, "Configure").
CONTRACT_ENV = [
    "DATABASE_URL",
    "BROKER_URL",
    "STORAGE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "PROJECT_KEY_FILE",
    "PROJECT_PUBLIC_KEY",
    "SWEEP_INTERVAL_SECONDS",
    "LOG_FORMAT",
]
TIMEOUT = 30  # seconds for any one external command

pytestmark = pytest.mark.timeout(120)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def kubernetes_files() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def kubernetes_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in kubernetes_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def unit_options(name: str) -> dict[str, list[str]]:
    """A unit file's ``Key=value`` lines (comments and sections dropped), values in order."""
    options: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            options.setdefault(key.strip(), []).append(value.strip())
    return options


# --- (a) Compose ------------------------------------------------------------------------


def compose_cli() -> list[str] | None:
    """``docker compose`` (the CLI plugin) or a standalone Compose v2 ``docker-compose``.

    Neither needs a Docker engine for ``config``. Compose v1 (Python) is not enough: it
    predates parts of the Compose Specification this file uses.
    """
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli in candidates:
        try:
            answer = run([*cli, "version", "--short"])
        except (OSError, subprocess.TimeoutExpired):
            continue
        if answer.returncode == 0 and answer.stdout.strip().lstrip("v").startswith("2"):
            return cli
    return None


def test_compose_file_passes_compose_config():
    cli = compose_cli()
    if cli is None:
        # Not failed under CI either: this machine kind has the docker client only, with no
        # Compose plugin, so Compose is not reliably here. The structural checks below run.
        pytest.skip(
            "SKIPPED LOUDLY: no Compose v2 (`docker compose` plugin or standalone `docker-compose`) "
            "on PATH, so `docker compose -f deploy/compose.yaml config -q` did not run"
        )
    answer = run([*cli, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT)
    assert answer.returncode == 0, answer.stderr
    assert answer.stderr.strip() == "", f"compose warned: {answer.stderr}"


def test_compose_dependencies_volumes_and_ports_hang_together():
    compose = load_compose()
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health; it has none"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is a one-shot: restart must be no"
            else:
                assert condition == "service_started", condition
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_compose_runs_the_contracts_processes():
    services = load_compose()["services"]
    assert services["scheduler"].get("deploy", {}).get("replicas", 1) == 1
    web = services["web"]
    assert web["deploy"]["replicas"] >= 2
    assert "ports" not in web, "replicas cannot share a published port: the proxy publishes it"
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    ours = {name for name, service in services.items() if service.get("image") == "tessera:local"}
    assert ours == set(services) - {"postgres", "rabbitmq", "seaweedfs", "proxy"}
    assert all(services[name]["build"]["dockerfile"] == "deploy/Dockerfile" for name in ours)
    caddyfile = (DEPLOY / "caddy/Caddyfile").read_text()
    assert re.search(r"name web\s+port 8000", caddyfile), "the proxy must spread over the web service"


def test_caddyfile_is_valid():
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("SKIPPED LOUDLY: no `caddy` on PATH, so deploy/caddy/Caddyfile was not validated")
    answer = run([caddy, "validate", "--adapter", "caddyfile", "--config", str(DEPLOY / "caddy/Caddyfile")])
    assert answer.returncode == 0, answer.stderr


# --- (b) Kubernetes ---------------------------------------------------------------------


def schema_versions() -> list[str]:
    from kubernetes_validate.utils import latest_version

    # The oldest Kubernetes still commonly run, and the newest the package knows.
    return sorted({"1.29.0", latest_version()})


@pytest.mark.parametrize("path", kubernetes_files(), ids=lambda p: p.name)
def test_kubernetes_manifest_matches_the_schemas(path):
    import kubernetes_validate

    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents, f"{path.name} holds no resource"
    for version in schema_versions():
        for document in documents:
            # strict: an unknown (misspelt) field is an error, not ignored.
            kubernetes_validate.validate(document, version, strict=True)


def test_kustomization_lists_the_manifests_and_renders():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in kubernetes_files()} - {"secret.example.yaml"}
    assert listed == on_disk, "kustomization.yaml and the folder disagree"
    assert "secret.example.yaml" not in listed, "example secrets must never be applied"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("SKIPPED LOUDLY: no `kubectl` on PATH, so `kubectl kustomize` did not render the folder")
    answer = run([kubectl, "kustomize", str(KUBERNETES)])
    assert answer.returncode == 0, answer.stderr
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    rendered = [doc for doc in yaml.safe_load_all(answer.stdout) if doc]
    assert len(rendered) == sum(1 for _ in kubernetes_documents()) - 2  # less the two example Secrets
    for document in rendered:
        kubernetes_validate.validate(document, latest_version(), strict=True)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "tessera"


def resources() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in kubernetes_documents()}


def pod_spec(kind: str, name: str) -> dict:
    return resources()[(kind, name)]["spec"]["template"]["spec"]


def test_kubernetes_web_worker_and_scheduler_follow_the_contract():
    found = resources()
    web = found[("Deployment", "tessera-web")]
    assert web["spec"]["replicas"] == 2
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == WEB_COMMAND
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"], "the HPA needs CPU requests"
    annotations = web["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    worker = found[("Deployment", "tessera-worker")]
    assert worker["spec"]["replicas"] == 2
    scheduler = found[("Deployment", "tessera-scheduler")]
    assert scheduler["spec"]["replicas"] == 1 and scheduler["spec"]["strategy"]["type"] == "Recreate"
    assert ("HorizontalPodAutoscaler", "tessera-scheduler") not in found, "never autoscale the scheduler"
    for name in ("tessera-web", "tessera-worker"):
        target = found[("HorizontalPodAutoscaler", name)]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in found
    job = found[("Job", "tessera-migrate")]["spec"]["template"]["spec"]
    assert job["containers"][0]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_kubernetes_names_point_at_each_other():
    found = resources()
    web_labels = found[("Deployment", "tessera-web")]["spec"]["template"]["metadata"]["labels"]
    service = found[("Service", "tessera-web")]
    assert service["spec"]["selector"].items() <= web_labels.items()
    port_names = {port["name"] for port in service["spec"]["ports"]}
    for rule in found[("Ingress", "tessera")]["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert ("Service", backend["name"]) in found and backend["port"]["name"] in port_names
    for _, doc in kubernetes_documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert (kind, ref["name"]) in found, f"{doc['metadata']['name']} reads missing {kind}"
        key_volumes = [v for v in spec.get("volumes", []) if "secret" in v]
        if doc["metadata"]["name"] == "tessera-worker":
            assert key_volumes[0]["secret"]["secretName"] == "tessera-project-key"
        else:
            assert not key_volumes, f"only the worker may mount the project key ({doc['metadata']['name']})"


# --- (c) systemd ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unit_copies(tmp_path_factory) -> Path:
    """The units, their ExecStart binaries pointed at stubs (verify wants them to exist)."""
    folder = tmp_path_factory.mktemp("units")
    stubs = folder / "bin"
    stubs.mkdir()
    for name in ("gunicorn", "python"):
        (stubs / name).write_text("#!/bin/sh\n")
        (stubs / name).chmod(0o755)
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text()
        assert "/opt/tessera/.venv/bin/" in text
        (folder / unit).write_text(text.replace("/opt/tessera/.venv/bin/", f"{stubs}/"))
    return folder


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_unit_verifies(unit, unit_copies):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("SKIPPED LOUDLY: no `systemd-analyze` on PATH, so the systemd units were not verified")
    name = unit.replace("@.", "@1.")  # a template is verified through an instance
    answer = run([analyze, "verify", str(unit_copies / name)], cwd=unit_copies)
    # verify exits 0 on unknown keys and bad values, printing a line about them: any line
    # about our file is a failure.
    complaints = [line for line in answer.stderr.splitlines() if unit in line or name in line]
    assert answer.returncode == 0 and not complaints, answer.stderr
    security = run([analyze, "security", "--offline=true", str(unit_copies / name)], cwd=unit_copies)
    if security.returncode != 0 and "offline" in security.stderr:
        return  # a systemd older than 250: no offline review
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert level, security.stdout + security.stderr
    assert float(level.group(1)) <= 3.0, f"hardening lost: exposure {level.group(1)}\n{security.stdout}"


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_unit_is_hardened(unit):
    options = unit_options(unit)
    for key, value in {
        "User": "tessera",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "EnvironmentFile": "/etc/tessera/tessera.env",
        "WorkingDirectory": "/opt/tessera",
    }.items():
        assert options.get(key) == [value], f"{unit}: {key}"
    if unit != "tessera-scheduler.service":
        assert options["ReadWritePaths"] == ["/var/lib/tessera/media"]
    if unit != "tessera-worker@.service":
        assert options["InaccessiblePaths"] == ["-/etc/tessera/project-signing.key"]


def environment_file() -> dict[str, str]:
    values = {}
    for line in (SYSTEMD / "tessera.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, separator, value = line.partition("=")
            assert separator and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"not KEY=value: {line!r}"
            values[key] = value
    return values


def test_every_deployment_gives_the_contracts_settings():
    in_env_file = set(environment_file())
    commented = set(re.findall(r"^#([A-Z_]+)=", (SYSTEMD / "tessera.env").read_text(), re.M))
    compose_env = set(load_compose()["x-tessera-env"])
    # The web service exports the public key the seed step wrote (deploy/compose.yaml).
    compose_env |= set(re.findall(r"export ([A-Z_]+)=", COMPOSE.read_text()))
    found = resources()
    kubernetes_env = set(found[("ConfigMap", "tessera")]["data"])
    kubernetes_env |= set(found[("Secret", "tessera")]["stringData"])
    worker = pod_spec("Deployment", "tessera-worker")["containers"][0]
    kubernetes_env |= {item["name"] for item in worker.get("env", [])}
    settings_source = (ROOT / "coordinator/settings.py").read_text()
    for name in CONTRACT_ENV:
        assert name in compose_env, f"compose.yaml lacks {name}"
        assert name in kubernetes_env, f"the Kubernetes manifests lack {name}"
        assert name in in_env_file | commented, f"tessera.env lacks {name}"
        if not name.startswith("AWS_"):  # boto3 reads those itself
            assert f'"{name}"' in settings_source, f"coordinator/settings.py does not read {name}"


def test_every_web_process_behind_a_proxy_names_the_proxy():
    """FORWARDED_ALLOW_IPS trusts no proxy by default (settings.py, gunicorn.conf.py), so each
    deployment with a proxy in front must say which peers are proxies, or the per-address
    limits would count the proxy as one client."""
    compose_web = load_compose()["services"]["web"]["environment"]
    web_container = pod_spec("Deployment", "tessera-web")["containers"][0]
    kubernetes_web = {item["name"]: item.get("value") for item in web_container["env"]}
    unit_environment = unit_options("tessera-web.service")["Environment"]
    systemd_web = dict(value.partition("=")[::2] for value in unit_environment)
    for where, value in [
        ("compose.yaml web", compose_web.get("FORWARDED_ALLOW_IPS")),
        ("kubernetes web.yaml", kubernetes_web.get("FORWARDED_ALLOW_IPS")),
        ("tessera-web.service", systemd_web.get("FORWARDED_ALLOW_IPS")),
    ]:
        assert value, f"{where} does not set FORWARDED_ALLOW_IPS"
    assert systemd_web["FORWARDED_ALLOW_IPS"] == "127.0.0.1,::1", "the plain server's proxy is local"


# --- (d) every command the files run exists ---------------------------------------------


@dataclass(frozen=True)
class Invocation:
    where: str  # e.g. compose:worker
    argv: tuple[str, ...]

    @property
    def kind(self) -> str:
        program = Path(self.argv[0]).name
        if program.startswith("python") and self.argv[1:2] == ("manage.py",):
            return f"manage.py {self.argv[2]}"
        if program.startswith("python") and self.argv[1:2] == ("-c",):
            return "python -c"
        if program.startswith("python"):
            return f"script {self.argv[1]}"
        return program


SHELL_WORDS = {"if", "then", "else", "fi", "until", "while", "do", "done", "exec", "!", "export"}


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a small sh script: split at ; && || | and new lines, with
    keywords, variable assignments and redirections dropped."""
    script = script.replace("\\\n", " ")
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        tokens = iter(list(lexer))
        for token in tokens:
            if token in (";", "&&", "||", "|", "&"):
                yield from _simple(words)
                words = []
            elif token in (">", ">>", "<", "2>"):
                next(tokens, None)
            else:
                words.append(token)
        yield from _simple(words)


def _simple(words: list[str]) -> Iterator[list[str]]:
    while words and (words[0] in SHELL_WORDS or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
        words = words[1:]
    if words and words[0] not in ("[", "test", "true", "sleep", "echo", "cat", "sed", "install"):
        yield words


def expand(where: str, argv: list[str]) -> Iterator[Invocation]:
    if Path(argv[0]).name in ("sh", "bash") and len(argv) >= 3 and "c" in argv[1]:
        for words in shell_commands(argv[2]):
            yield Invocation(where, tuple(words))
    elif argv and Path(argv[0]).name not in ("install",):
        yield Invocation(where, tuple(argv))


def compose_invocations() -> Iterator[Invocation]:
    for name, service in load_compose()["services"].items():
        command = service.get("command")
        if command is None or not str(service.get("image", "")).startswith("tessera"):
            continue
        argv = command if isinstance(command, list) else shlex.split(command)
        # Compose turns $$ into $ before the shell sees it.
        yield from expand(f"compose:{name}", [word.replace("$$", "$") for word in argv])


def kubernetes_invocations() -> Iterator[Invocation]:
    for _, doc in kubernetes_documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            argv = container.get("command", []) + container.get("args", [])
            yield from expand(f"kubernetes:{doc['metadata']['name']}/{container['name']}", argv)


def systemd_invocations() -> Iterator[Invocation]:
    for unit in UNITS:
        for line in unit_options(unit)["ExecStart"]:
            yield from expand(f"systemd:{unit}", shlex.split(line))


def all_invocations() -> list[Invocation]:
    return [*compose_invocations(), *kubernetes_invocations(), *systemd_invocations()]


def test_each_deployment_starts_web_worker_scheduler_and_migrations():
    needed = {"gunicorn", "manage.py rundramatiq", "manage.py run_scheduler"}
    for source, invocations in (
        ("compose", list(compose_invocations())),
        ("kubernetes", list(kubernetes_invocations())),
        ("systemd", list(systemd_invocations())),
    ):
        kinds = {invocation.kind for invocation in invocations}
        assert needed <= kinds, f"{source} runs {sorted(kinds)}"
        if source != "systemd":  # on a plain server migrate is run by hand (docs/deployment.md)
            assert "manage.py migrate" in kinds
        for invocation in invocations:
            argv = [Path(invocation.argv[0]).name, *invocation.argv[1:]]
            if invocation.kind == "gunicorn":
                assert argv == WEB_COMMAND, invocation
            if invocation.kind == "manage.py rundramatiq":
                assert argv[2:] == WORKER_ARGS, invocation


def management_invocations() -> list[Invocation]:
    return [i for i in all_invocations() if i.kind.startswith("manage.py ")]


@pytest.mark.parametrize("invocation", management_invocations(), ids=lambda i: f"{i.where}:{i.argv[2]}")
def test_management_command_exists_and_takes_these_flags(invocation):
    from django.core.management import CommandError, get_commands, load_command_class

    name, *arguments = invocation.argv[2:]
    commands = get_commands()
    assert name in commands, f"{invocation.where}: no management command {name!r}"
    command = load_command_class(commands[name], name)
    parser = command.create_parser("manage.py", name)
    try:
        parser.parse_args(arguments)
    except CommandError as error:
        pytest.fail(f"{invocation.where}: manage.py {name} {' '.join(arguments)}: {error}")


def test_gunicorn_app_and_config_exist():
    import importlib

    invocations = [i for i in all_invocations() if i.kind == "gunicorn"]
    assert len(invocations) == 3  # compose, Kubernetes, systemd
    module, _, attribute = WEB_COMMAND[1].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert (ROOT / WEB_COMMAND[3]).is_file()


def test_other_commands_exist():
    from tessera_client.cli import build_parser

    seen = set()
    for invocation in all_invocations():
        kind = invocation.kind
        seen.add(kind)
        if kind.startswith("script "):
            assert (ROOT / invocation.argv[1]).is_file(), invocation
        elif kind == "tessera":
            try:
                build_parser().parse_args(list(invocation.argv[1:]))
            except SystemExit:
                pytest.fail(f"{invocation.where}: the client refuses {shlex.join(invocation.argv)}")
        elif kind not in ("gunicorn", "python -c") and not kind.startswith("manage.py "):
            pytest.fail(f"{invocation.where}: unexpected program {kind}: {invocation.argv}")
    assert {"tessera", "script deploy/make_bucket.py"} <= seen


def test_probed_paths_are_routes():
    from django.urls import resolve

    paths = {"/healthz", "/readyz", "/metrics"}
    for path in paths:
        resolve(path)  # Resolver404 if a probe or the scrape would miss
    compose_text = COMPOSE.read_text() + (DEPLOY / "caddy/Caddyfile").read_text()
    assert "/readyz" in compose_text and "/healthz" in compose_text


# --- (e) gunicorn.conf.py ----------------------------------------------------------------


def gunicorn_settings(monkeypatch, **environment: str) -> dict:
    for name in ("PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_conf_defaults(monkeypatch):
    conf = gunicorn_settings(monkeypatch)
    assert conf["bind"] == "0.0.0.0:8000"
    assert conf["workers"] == 2 * os.cpu_count() + 1
    assert conf["timeout"] == 60
    assert 0 < conf["graceful_timeout"] <= 30
    assert conf["accesslog"] == "-"
    assert conf["forwarder_headers"] == "", "a proxy must not be able to rewrite the signed path"
    assert conf["forwarded_allow_ips"] == "", "no proxy is trusted unless a deployment names it"
    assert "logconfig_dict" not in conf


def test_gunicorn_conf_follows_the_environment(monkeypatch):
    conf = gunicorn_settings(
        monkeypatch, PORT="9123", WEB_CONCURRENCY="3", FORWARDED_ALLOW_IPS="*", LOG_FORMAT="json"
    )
    assert conf["bind"] == "0.0.0.0:9123"
    assert conf["workers"] == 3
    assert conf["forwarded_allow_ips"] == "*"
    formatter = conf["logconfig_dict"]["formatters"]["json"]["()"]
    module, _, name = formatter.rpartition(".")
    __import__(module)
    assert hasattr(sys.modules[module], name)
    assert conf["logconfig_dict"]["loggers"]["gunicorn.access"]["handlers"] == ["stdout"]


def test_gunicorn_accepts_the_conf_file():
    answer = run(
        [sys.executable, "-m", "gunicorn", "--check-config", "--config", str(GUNICORN_CONF), WEB_COMMAND[1]],
        cwd=ROOT,
        env={**os.environ, "PORT": "9123", "WEB_CONCURRENCY": "3", "LOG_FORMAT": "json"},
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_gunicorn_conf_prepares_and_cleans_the_metrics_folder(monkeypatch, tmp_path):
    conf = gunicorn_settings(monkeypatch)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    conf["on_starting"](None)
    assert list(folder.iterdir()) == []

    class Worker:
        pid = 424242

    conf["child_exit"](None, Worker())
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    conf["on_starting"](None)
    made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir()
    made.rmdir()


# --- The image -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_follows_the_contract():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(value for kind, value in instructions if kind == "RUN")
    assert "pip install -r requirements.txt ./client" in runs
    assert "manage.py collectstatic --noinput" in runs
    assert "manage.py build_client" in runs, "the image serves the client's wheel at /client"
    cmd = [value for kind, value in instructions if kind == "CMD"]
    assert cmd and yaml.safe_load(cmd[-1]) == WEB_COMMAND
    user = [value for kind, value in instructions if kind == "USER"]
    assert user and not user[-1].startswith(("0", "root")), "the image must not run as root"
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {"var", ".env", "**/.env", ".venv", ".git"} <= set(ignored)


def copied_paths() -> list[str]:
    return [value.split()[0] for kind, value in dockerfile_instructions() if kind == "COPY"]


def test_the_images_files_are_enough_to_run(tmp_path):
    """What the Dockerfile copies, alone in a folder, loads, collects its static files and
    builds the client's wheel."""
    assert "var" not in {path.rstrip("/") for path in copied_paths()}
    for source in copied_paths():
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "tests", "var")
            shutil.copytree(path, tmp_path / source, ignore=ignore)
        else:
            shutil.copy(path, tmp_path / source)
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "BROKER_URL", "STORAGE_URL", "DJANGO_SETTINGS_MODULE")
    }
    environment.update(SECRET_KEY="test-only", STATIC_ROOT=str(tmp_path / "static"))
    commands = (
        ["manage.py", "check"],
        ["manage.py", "collectstatic", "--noinput", "-v", "0"],
        ["manage.py", "build_client"],
    )
    for argv in commands:
        answer = run([sys.executable, *argv], cwd=tmp_path, env=environment)
        assert answer.returncode == 0, answer.stdout + answer.stderr
    assert any((tmp_path / "static/admin").iterdir())
    assert sorted(path.suffix for path in (tmp_path / "var" / "client").iterdir()) == [".json", ".whl"]
