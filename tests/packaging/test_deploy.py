"""The production layout: Dockerfile and docker-compose.yml.

Docker is not part of the test suite (and not installed where it runs), so the image is
never built here. What is checked instead: the compose file validates against the Compose
specification, installs nothing when a container starts, and refers only to Dockerfile
targets that exist; and the Dockerfile's own commands, read from the file, run outside a
container: the builder stage's wheel build on a READ-ONLY copy of the source (the failure of
the old layout), the server stage's install into a fresh virtualenv, then the compose file's
``migrate`` and ``serve`` commands and its health check against the installed server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
import yaml

from tests.packaging.test_wheel import tracked_files
from tests.support.servers import PROJECT, free_port

DOCKERFILE = PROJECT / "Dockerfile"
COMPOSE = PROJECT / "docker-compose.yml"


def dockerfile_stages() -> dict:
    """Stage name -> its instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            match = re.match(r"(\S+)\s+AS\s+(\S+)$", rest.strip(), re.I)
            assert match, f"every stage is named: {line}"
            current = stages.setdefault(match.group(2), [])
            current.append(("FROM", match.group(1)))
        else:
            current.append((keyword.upper(), rest.strip()))
    return stages


def instructions(stage: str, keyword: str) -> list:
    return [rest for key, rest in dockerfile_stages()[stage] if key == keyword]


def base_image(stage: str) -> str:
    stages = dockerfile_stages()
    image = instructions(stage, "FROM")[0]
    return base_image(image) if image in stages else image


def run_command(stage: str) -> str:
    """The stage's one RUN, without its --mount flags: a shell command."""
    (run,) = instructions(stage, "RUN")
    return re.sub(r"--mount=\S+\s*", "", run).strip()


def in_build_context(name: str) -> bool:
    """Whether .dockerignore lets a tracked file into the build context (its plain patterns:
    a pattern matching the path or one of its parent folders leaves it out)."""
    from fnmatch import fnmatch

    patterns = [line.strip() for line in (PROJECT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = name.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return not any(fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch(prefix, pattern)
                   for pattern in patterns for prefix in prefixes)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# ------------------------------------------------------------------ static checks


def test_compose_file_validates_against_the_compose_specification(tmp_path):
    checker = shutil.which("check-jsonschema", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if checker is None:
        pytest.skip("check-jsonschema is not installed (the dev extra has it)")

    def validate(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(path)],
                              capture_output=True, text=True, timeout=120)

    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "docker-compose.yml"  # the validator does refuse a wrong file
    broken.write_text(COMPOSE.read_text().replace("    depends_on:\n", "    depends_upon:\n", 1))
    assert validate(broken).returncode != 0


def test_compose_installs_nothing_at_start_and_mounts_no_source():
    for name, service in compose()["services"].items():
        started = " ".join(str(part) for key in ("entrypoint", "command")
                           for part in (service.get(key) or []) if part)
        assert not re.search(r"\bpip\b|install", started), f"{name} installs at start: {started}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in ("./deploy/haproxy.cfg",) or not source.startswith((".", "/")), (
                f"{name} mounts {source} from the host")


def test_every_built_service_uses_a_dockerfile_target_that_exists():
    stages = dockerfile_stages()
    services = compose()["services"]
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(built) == {"migrate", "server-1", "server-2", "pc-agent"}
    for name, build in built.items():
        assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"
        assert build["target"] in stages, f"{name}: no stage {build['target']}"
    assert {built[n]["target"] for n in ("migrate", "server-1", "server-2")} == {"server"}
    assert built["pc-agent"]["target"] == "agent"
    # the replicas start after the one-shot migration, haproxy after healthy replicas
    for name in ("server-1", "server-2"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services["haproxy"]["depends_on"][name]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["migrate"]
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in services["haproxy"]["volumes"]
    assert services["haproxy"]["image"].startswith("haproxy:")


def test_dockerfile_final_stages_are_slim_non_root_and_without_compiler():
    stages = dockerfile_stages()
    assert list(stages)[-1] == "server"  # `docker build .` gives the server image
    for stage in ("server", "agent"):
        assert base_image(stage) == "python:3.11-slim"
        (user,) = instructions(stage, "USER")
        assert user not in ("root", "0")
        text = " ".join(rest for _, rest in stages[stage] + stages["runtime"])
        assert not re.search(r"apt-get|gcc|build-essential|\bcc\b", text)
        assert "from=builder" in instructions(stage, "RUN")[0]  # the wheel comes from the builder
    assert instructions("server", "ENTRYPOINT") == ['["edgefarm-server"]']
    assert instructions("agent", "ENTRYPOINT") == ['["edgefarm-agent"]']


# ------------------------------------------------------------------ the commands, run


def _paths(command: str, mapping: dict) -> str:
    """``command`` with the image's absolute folders replaced by local ones."""
    folders = "|".join(mapping)
    pattern = r"(?<=[\s=\"'(])/(" + folders + r")(?=[/\s\"')]|$)"
    return re.sub(pattern, lambda m: str(mapping[m.group(1)]), command)


def _read_only(source: Path, argv: list) -> list:
    """``argv`` run where ``source`` cannot be written, even by root (a read-only bind
    mount in a private mount namespace, as Docker's ``--mount=type=bind,readonly``)."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make the source read-only")
    return ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(source), *argv]


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    """The builder stage's wheel, built from a read-only copy of the tracked files."""
    root = tmp_path_factory.mktemp("image")
    source, build, wheels = root / "src", root / "build", root / "wheels"
    mapping = {"src": source, "build": build, "wheels": wheels}
    context = [name for name in tracked_files() if in_build_context(name)]
    assert "pyproject.toml" in context and not any(n.startswith("tests/") for n in context)
    for name in context:
        if (PROJECT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, source / name)
    config = source / "deploy" / "build.cfg"
    config.write_text(_paths(config.read_text(), mapping))
    subprocess.run(["chmod", "-R", "a-w", str(source)], check=True)
    build.mkdir()
    probe = subprocess.run(_read_only(source, ["touch", str(source / "probe")]), capture_output=True)
    if probe.returncode == 0:
        pytest.skip("could not make the source read-only here")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    command = _paths(run_command("builder"), mapping)
    started = time.monotonic()
    result = subprocess.run(_read_only(source, ["sh", "-c", command]), cwd=build, env=env,
                            capture_output=True, text=True, timeout=300)
    built_in = time.monotonic() - started
    subprocess.run(["chmod", "-R", "u+w", str(source)], check=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield mapping, built_in


def test_the_builder_stage_builds_the_wheel_from_a_read_only_source(image_folders):
    mapping, built_in = image_folders
    (wheel,) = mapping["wheels"].glob("edgefarm-*-py3-none-any.whl")
    assert not (mapping["src"] / "edgefarm.egg-info").exists() and not (mapping["src"] / "build").exists()
    assert (mapping["build"] / "edgefarm.egg-info").is_dir()  # where deploy/build.cfg sends it
    print(f"wheel built read-only in {built_in:.1f} s")


def test_the_server_stage_installs_and_starts_as_compose_runs_it(image_folders, tmp_path):
    mapping, _ = image_folders
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    started = time.monotonic()
    install = subprocess.run(["sh", "-c", _paths(run_command("server"), mapping)], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=600)
    installed_in = time.monotonic() - started
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    print(f"server stage install: {installed_in:.1f} s")

    # the compose file's environment, on SQLite in a temporary data folder for this smoke
    server = compose()["x-server"]
    service_env = {k: str(v) for k, v in server["environment"].items()}
    assert service_env.pop("EDGEFARM_DATABASE_URL").startswith("postgresql+psycopg://")
    service_env["EDGEFARM_DATA_DIR"] = str(tmp_path / "data")
    env.update(service_env)
    (entrypoint,) = [re.findall(r'"([^"]+)"', e)[0] for e in instructions("server", "ENTRYPOINT")]
    migrate = subprocess.run([str(bin_dir / entrypoint), *compose()["services"]["migrate"]["command"]],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    serve = [a.replace("0.0.0.0", "127.0.0.1").replace("8000", str(port)) for a in server["command"]]
    assert serve[0] == "serve"
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([str(bin_dir / entrypoint), *serve], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        health = [a.replace("8000", str(port)) for a in server["healthcheck"]["test"]]
        assert health[0] == "CMD"
        healthy = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            healthy = subprocess.run([str(bin_dir / health[1]), *health[2:]], env=env,
                                     capture_output=True, text=True, timeout=30)
            if healthy.returncode == 0:
                break
            time.sleep(0.3)
        assert healthy is not None and healthy.returncode == 0, (tmp_path / "server.log").read_text()
        import httpx

        info = httpx.get(f"http://127.0.0.1:{port}/api/v1/info", timeout=5).json()
        assert info["version"]
        where = subprocess.run([str(bin_dir / "python"), "-c", "import edgefarm.server, sys; "
                                "print(edgefarm.server.__file__)"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
        assert Path(where.stdout.strip()).is_relative_to(env_dir)  # the wheel, not the checkout
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_haproxy_config_outlasts_the_long_poll_and_checks_the_health_endpoint():
    from edgefarm.shared.contract.rules import DEFAULT_INTERVALS

    config = (PROJECT / "deploy" / "haproxy.cfg").read_text()
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}

    def timeout(name: str) -> float:
        value, unit = re.search(rf"^\s*timeout {name}\s+(\d+)(ms|s|m|h)\s*$", config, re.M).groups()
        return int(value) * seconds[unit]

    long_poll = DEFAULT_INTERVALS.poll_wait_seconds + DEFAULT_INTERVALS.poll_jitter_seconds
    assert timeout("server") > 2 * long_poll and timeout("client") > 2 * long_poll
    assert re.search(r"^\s*balance roundrobin\s*$", config, re.M)
    (checked,) = re.findall(r"^\s*option httpchk GET (\S+)\s*$", config, re.M)
    assert checked == "/api/v1/info"
    assert checked in " ".join(compose()["x-server"]["healthcheck"]["test"])
    servers = re.findall(r"^\s*server \S+ (\S+):8000\b", config, re.M)
    assert servers == [n for n in compose()["services"] if n.startswith("server-")]
