"""The installed distribution: one import name, the migrations inside, no packaging warnings.

The wheel is built from the files git tracks (what a clean clone holds), with pip's isolated
build, and installed into a fresh virtualenv outside the checkout; from there
``edgefarm-server migrate`` upgrades a fresh PostgreSQL database.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.support.servers import PROJECT

#: Checkout folder -> the sub-package of edgefarm it becomes (pyproject.toml's package-dir).
PACKAGE_FOLDERS = {"shared": "shared", "server": "server", "agent": "agent", "tools": "tools",
                   "cli": "cli", "migrations": "migrations"}
#: Build output lines that are not about the package's configuration.
HARMLESS = ("byte-compiling is disabled", "WARNING: Location")


def tracked_files() -> list:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True,
                                check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the wheel is built from the files git tracks; git ls-files failed: {exc}")
    return [name for name in listed.decode().split("\0") if name]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel path, build log, tracked files) of a wheel built from a clean copy of the tree."""
    files = tracked_files()
    source = tmp_path_factory.mktemp("clone") / "edgefarm"
    for name in files:
        if (PROJECT / name).is_file():
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, target)
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(dist),
                             str(source)], cwd=dist, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = dist.glob("edgefarm-*.whl")
    return wheel, result.stdout + result.stderr, files


def test_the_wheel_installs_one_import_name_with_the_migrations_inside(built):
    wheel, _, files = built
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    (dist_info,) = [top for top in tops if top.endswith(".dist-info")]
    assert tops == {"edgefarm", dist_info}
    top_level = zipfile.ZipFile(wheel).read(f"{dist_info}/top_level.txt").decode().split()
    assert top_level == ["edgefarm"]
    for member in ("edgefarm/migrations/env.py", "edgefarm/migrations/script.py.mako",
                   "edgefarm/migrations/versions/0001_initial_schema.py",
                   "edgefarm/server/web/templates/base.html", "edgefarm/server/web/static/style.css"):
        assert member in names
    # every Python file of the package folders is in the wheel: no package left out of pyproject
    expected = {f"edgefarm/{PACKAGE_FOLDERS[name.split('/')[0]]}/{name.split('/', 1)[1]}"
                for name in files if name.split("/")[0] in PACKAGE_FOLDERS and name.endswith(".py")}
    assert expected - set(names) == set()


def test_the_build_warns_about_nothing(built):
    _, log, _ = built
    warnings = [line.strip() for line in log.splitlines()
                if re.search(r"warn", line, re.I) and not any(h in line for h in HARMLESS)]
    assert warnings == []


def test_edgefarm_server_migrate_works_from_the_installed_wheel(built, pg_database, tmp_path):
    wheel, _, _ = built
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{wheel}[server,postgres]"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import edgefarm.server.migrate as m; print(m.MIGRATIONS_DIR)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(env_dir)  # the wheel's copy, not the checkout's
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "EDGEFARM_DATABASE_URL": pg_database,
           "EDGEFARM_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    migrate = subprocess.run([str(env_dir / "bin" / "edgefarm-server"), "migrate"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(pg_database)
    try:
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    from alembic.script import ScriptDirectory

    from edgefarm.server.migrate import alembic_config

    assert revision == ScriptDirectory.from_config(alembic_config(pg_database)).get_current_head()
    assert {"models", "datasets", "devices", "jobs", "runs", "results", "tokens"} <= tables
