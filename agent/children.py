"""The run's child process and everything it starts, as one process group.

Each run's child is started in its own session (``start_new_session``), so its
process group id is its pid and a runtime's helpers (``snpe-net-run``...) share
it; stopping a run kills the whole group. While a run lasts, the group id and
the run's temporary folder are recorded in ``<state dir>/child.json``: an agent
killed with SIGKILL cannot clean up, so the next agent process kills a recorded
group that is still alive and removes the leftover run folders on start-up
(``reap_leftovers``). The child also watches its parent and ends its group when
the agent is gone (``execute.watch_parent``). Linux and Python 3.9.
"""

import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import List, Optional

log = logging.getLogger("edgefarm.agent")

RUN_FOLDER_PREFIX = "edgefarm-run-"


def kill_group(pgid: int) -> bool:
    """SIGKILL every process of the group; False when none was left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_members(pgid: int) -> List[int]:
    """Live processes of group ``pgid`` that are also in session ``pgid`` (what a
    child started with ``start_new_session`` and its descendants are)."""
    members: List[int] = []
    if not Path("/proc/self/stat").exists():
        return members
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if fields[0] != "Z" and int(fields[2]) == pgid and int(fields[3]) == pgid:
            members.append(int(entry.name))
    return members


class ChildRecord:
    """``<state dir>/child.json``: the process group and folder of the run in progress."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "child.json"
        self.runs_dir = self.state_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)

    def record(self, pgid: int, folder: Path) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pgid": pgid, "folder": str(folder)}))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def read(self) -> Optional[dict]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def reap_leftovers(self) -> Optional[int]:
        """Kill the recorded group if it outlived its agent, remove leftover run
        folders; the group id killed, or None."""
        killed = None
        recorded = self.read()
        if recorded is not None:
            pgid = int(recorded["pgid"])
            if group_members(pgid) and kill_group(pgid):
                killed = pgid
                log.warning("killed process group %s left by a previous agent process", pgid)
        for folder in self.runs_dir.glob(RUN_FOLDER_PREFIX + "*"):
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed leftover run folder %s", folder)
        self.clear()
        return killed
