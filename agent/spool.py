"""Reports waiting to be delivered: written to disk before the first attempt
to post them, removed once the server has them, so a result survives a server
outage or an agent restart. The server treats a repeated report as a no-op.

A report the server refuses (its lease is no longer current: the run was
requeued, given to another attempt or finished otherwise) is not deleted: it
moves to ``refused/`` with the server's reason, for a person to inspect; the
newest ``KEEP_REFUSED`` are kept."""

import json
import os
from pathlib import Path
from typing import Iterator, Tuple

from edgefarm.shared.contract.schemas import RunReport

KEEP_REFUSED = 50


class Spool:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.refused_dir = self.directory / "refused"
        self.refused_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, run_id: int, lease_id: str) -> Path:
        return self.directory / f"run-{run_id}-{lease_id}.json"

    def put(self, run_id: int, report: RunReport) -> Path:
        path = self._path(run_id, report.lease_id)
        _write_durably(path, {"run_id": run_id, "report": report.model_dump(mode="json")})
        return path

    def pending(self) -> Iterator[Tuple[Path, int, RunReport]]:
        for path in sorted(self.directory.glob("run-*.json")):
            try:
                data = json.loads(path.read_text())
                yield path, int(data["run_id"]), RunReport.model_validate(data["report"])
            except (ValueError, KeyError):
                path.rename(path.with_suffix(".corrupt"))

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)

    def refuse(self, path: Path, reason: str) -> Path:
        """Move a report the server refused to ``refused/``, with the reason."""
        data = json.loads(path.read_text())
        data["refused"] = reason
        kept = self.refused_dir / path.name
        _write_durably(kept, data)
        path.unlink(missing_ok=True)
        old = sorted(self.refused_dir.glob("run-*.json"), key=lambda p: p.stat().st_mtime)
        for stale in old[:-KEEP_REFUSED]:
            stale.unlink(missing_ok=True)
        return kept

    def refused(self) -> list:
        return sorted(self.refused_dir.glob("run-*.json"))

    def __len__(self) -> int:
        return len(list(self.directory.glob("run-*.json")))


def _write_durably(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
