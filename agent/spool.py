"""Reports waiting to be delivered: written to disk before the first attempt
to post them, removed once the server has them, so a result survives a server
outage or an agent restart. The server treats a repeated report as a no-op."""

import json
import os
from pathlib import Path
from typing import Iterator, Tuple

from edgefarm.shared.contract.schemas import RunReport


class Spool:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, run_id: int, lease_id: str) -> Path:
        return self.directory / f"run-{run_id}-{lease_id}.json"

    def put(self, run_id: int, report: RunReport) -> Path:
        path = self._path(run_id, report.lease_id)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump({"run_id": run_id, "report": report.model_dump(mode="json")}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
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

    def __len__(self) -> int:
        return len(list(self.directory.glob("run-*.json")))
