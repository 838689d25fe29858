"""The import contracts of ``pyproject.toml`` (run by ``make lint``) hold on the tree and
break when a forbidden import is added.

Each case copies the package folders into a temporary ``edgefarm/`` folder, adds one import
that the layering forbids, and runs ``lint-imports`` on the copy (``PYTHONPATH`` puts the copy
ahead of the editable install).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import PROJECT

FOLDERS = ("shared", "server", "agent", "tools", "cli", "migrations")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: (file to edit, import to add, the contract that must break)
FORBIDDEN = [
    ("server/queue.py", "import edgefarm.agent.worker", "Layers: shared <- server | agent"),
    ("agent/spool.py", "import edgefarm.server.queue", "Layers: shared <- server | agent"),
    ("shared/datasets/__init__.py", "import edgefarm.tools.sweep", "Layers: shared <- server | agent"),
    ("shared/contract/enums.py", "import numpy", "The wire contract needs pydantic only"),
    ("shared/contract/schemas.py", "import edgefarm.shared.datasets", "Shared: contract <- formats"),
    ("server/app.py", "import PIL", "The server needs no device-side or client libraries"),
]


def lint_copy(tmp_path: Path, edit=None) -> subprocess.CompletedProcess:
    root = tmp_path / "copy"
    for folder in FOLDERS:
        shutil.copytree(PROJECT / folder, root / "edgefarm" / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(PROJECT / "pyproject.toml", root / "pyproject.toml")
    if edit is not None:
        path, line = edit
        target = root / "edgefarm" / path
        target.write_text(target.read_text() + f"\n{line}  # added by the test\n")
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(autouse=True)
def _needs_import_linter():
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (the [dev] extra)")


def test_the_tree_keeps_every_contract(tmp_path):
    result = lint_copy(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("path,line,contract", FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_a_forbidden_import_breaks_its_contract(tmp_path, path, line, contract):
    result = lint_copy(tmp_path, (path, line))
    assert result.returncode == 1, result.stdout[-3000:]
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    module = "edgefarm." + path[:-3].replace("/", ".").removesuffix(".__init__")
    assert module in broken
