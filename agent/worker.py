"""The agent's service loop: long-poll for a lease, fetch the run's artifacts,
execute the run in a child process while a heartbeat task renews the lease and
watches for cancellation, and deliver the report (spooled first, so nothing is
lost when the server is away).

Spooled reports are delivered before any new lease is asked for, retried while
the server is away at most one heartbeat interval apart, so that a report
arrives while its lease is still current. The run's child process is a process
group of its own, recorded in the state dir and killed as a group
(``edgefarm.agent.children``).

Background tasks are small named threads; if one dies unexpectedly the agent
stops loudly. Errors come sorted from ``edgefarm.shared.client``: retryable ones back
off, fatal ones stop the agent with their message.
"""

import json
import logging
import random
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

from edgefarm.shared.client import (
    AccessDenied,
    AgentSession,
    Backoff,
    Conflict,
    ProtocolMismatch,
    Rejected,
    TransientError,
)
from edgefarm.shared.contract.enums import RunState
from edgefarm.shared.contract.rules import DEFAULT_INTERVALS
from edgefarm.shared.contract.schemas import DeviceCapabilities, Lease, ReferenceSpec, RunReport, RunResult

from .artifacts import ArtifactCache, CacheError
from .children import RUN_FOLDER_PREFIX, ChildRecord, kill_group
from .clock import Deadline
from .config import AgentConfig
from .execute import ReferenceRun, RunSpec
from .pause import pause_at
from .spool import Spool

log = logging.getLogger("edgefarm.agent")


class RunContext:
    """What the heartbeat task and the executor share about the current run."""

    def __init__(self, lease: Lease):
        self.lease = lease
        self.progress: dict = {"phase": "download"}
        self.cancel_reason: Optional[str] = None
        self.lease_lost = False
        self.finished = threading.Event()
        self.process: Optional[subprocess.Popen] = None

    def stop_child(self) -> None:
        """Kill the child's whole process group (it is the group's leader)."""
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process.pid)


class Worker:
    def __init__(self, config: AgentConfig, client: AgentSession, capabilities: DeviceCapabilities):
        self.config, self.client, self.capabilities = config, client, capabilities
        self.cache = ArtifactCache(Path(config.cache_dir), config.cache_max_bytes)
        self.spool = Spool(Path(config.state_dir) / "spool")
        self.children = ChildRecord(Path(config.state_dir))
        self.intervals = DEFAULT_INTERVALS  # until the server answers with its own
        self.stopping = threading.Event()
        self.current: Optional[RunContext] = None
        self.fatal: Optional[str] = None
        self._idle_polling = False

    # ------------------------------------------------------------ lifecycle

    def request_stop(self, *_args) -> None:
        """SIGTERM/SIGINT: stop polling; release (or finish) the current run.

        While idle in a long poll, the handler interrupts the blocked request
        (signal handlers run in the main thread), so the agent stops at once."""
        log.info("stop requested")
        self.stopping.set()
        if self._idle_polling:
            raise _StopRequested()
        run = self.current
        if run is not None and self.config.shutdown == "release":
            run.cancel_reason = "agent shutting down"
            run.stop_child()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run_forever(self) -> int:
        try:
            self.children.reap_leftovers()
            self._start()
            while self.flush_spool():
                lease = self._next_lease()
                if lease is not None:
                    self.execute(lease)
        except (AccessDenied, ProtocolMismatch) as exc:
            log.error("%s", exc)
            self.fatal = str(exc)
            return 2
        finally:
            run = self.current
            if run is not None:
                run.stop_child()
        return 3 if self.fatal else 0

    def _start(self) -> None:
        response = self._retrying(lambda: self.client.heartbeat(self.capabilities))
        if response is not None:
            self.intervals = response.intervals
            log.info("connected as device %s (%s)", response.device_id, response.status)

    def _retrying(self, call):
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                result = call()
                backoff.reset()
                return result
            except TransientError as exc:
                delay = backoff.next_delay(exc.retry_after)
                log.warning("%s; retrying in %.1f s", exc, delay)
                self.stopping.wait(delay)
        return None

    def _next_lease(self) -> Optional[Lease]:
        self._idle_polling = True
        try:
            lease = self._retrying(lambda: self.client.lease(self.intervals.poll_wait_seconds))
            if lease is None and not self.stopping.is_set():
                self.stopping.wait(random.uniform(0, self.intervals.poll_jitter_seconds))
        except _StopRequested:
            return None
        finally:
            self._idle_polling = False
        return lease

    # ------------------------------------------------------------ one run

    def execute(self, lease: Lease) -> None:
        run = RunContext(lease)
        self.current = run
        self.intervals = lease.intervals
        beat = threading.Thread(target=self._guarded, args=(self._heartbeat_loop, run),
                                name=f"heartbeat-{lease.run_id}", daemon=True)
        beat.start()
        try:
            report = self._perform(run)
        finally:
            run.finished.set()
            beat.join(timeout=10)
            self.current = None
        if run.lease_lost:
            log.warning("run %s: lease lost; result dropped", lease.run_id)
            return
        if report is None:  # released on shutdown
            self._release(run)
            return
        self.spool.put(lease.run_id, report)
        pause_at("report")
        self.deliver_spool()

    def _perform(self, run: RunContext) -> Optional[RunReport]:
        lease = run.lease
        try:
            spec = self._prepare(run)
            result = self._run_child(run, spec)
            return RunReport(lease_id=lease.lease_id, state=RunState.succeeded, result=result)
        except _Cancelled as exc:
            if self.stopping.is_set() and self.config.shutdown == "release" and not exc.by_server:
                return None
            return RunReport(lease_id=lease.lease_id, state=RunState.cancelled, error=str(exc))
        except (CacheError, _RunError, Rejected, TransientError) as exc:
            log.warning("run %s failed: %s", lease.run_id, exc)
            return RunReport(lease_id=lease.lease_id, state=RunState.failed, error=str(exc))

    def _prepare(self, run: RunContext) -> RunSpec:
        lease = run.lease

        def fetch(url, dest, sha):
            pause_at("download")
            self.client.download(url, dest, sha, progress=lambda done, total: run.progress.update(
                {"phase": "download", "done": done, "total": total}))

        model_path = self.cache.get_blob(lease.model.sha256, lease.model.download_url, fetch,
                                         lease.model.size_bytes)
        dataset_dir = None
        if lease.dataset is not None:
            ds = lease.dataset
            if ds.source == "registered":
                dataset_dir = self.cache.verify_registered(Path(ds.path), ds.sha256)
            else:
                dataset_dir = self.cache.get_dataset_dir(ds.sha256, ds.download_url, fetch, ds.size_bytes)
        runtime = str(lease.settings.runtime)
        reference = self._reference(lease, fetch)
        return RunSpec(
            model_path=str(model_path), settings=lease.settings, task=str(lease.task),
            dataset_dir=str(dataset_dir) if dataset_dir else None,
            dataset_layout=str(lease.dataset.layout) if lease.dataset else None,
            dataset_split=lease.dataset.split if lease.dataset else None,
            preprocessing=lease.model.preprocessing, labels=lease.model.labels,
            runtime_options=self.config.runtime_options.get(runtime, {}),
            default_threads=self.config.threads, reference=reference,
            thermal=dict(self.config.thermal), repetition=dict(self.config.repetition),
        )

    def _reference(self, lease: Lease, fetch) -> Optional[ReferenceRun]:
        """The reference model (downloaded) and how to run it, when the job names one."""
        model, spec = lease.reference_model, lease.settings.reference
        if model is None or spec is None:
            return None
        spec = ReferenceSpec() if isinstance(spec, str) else spec
        path = self.cache.get_blob(model.sha256, model.download_url, fetch, model.size_bytes)
        return ReferenceRun(runtime=str(spec.runtime), model_path=str(path), accelerator=spec.accelerator,
                            max_samples=spec.max_samples, model_id=model.id, model_name=model.name,
                            model_sha256=model.sha256,
                            options=self.config.runtime_options.get(str(spec.runtime), {}))

    def _run_child(self, run: RunContext, spec: RunSpec) -> RunResult:
        run.progress = {"phase": "load"}
        with tempfile.TemporaryDirectory(prefix=RUN_FOLDER_PREFIX, dir=self.children.runs_dir) as tmp:
            spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
            spec_path.write_text(json.dumps(spec.to_json()))
            run.process = subprocess.Popen(
                [sys.executable, "-m", "edgefarm.agent.execute", str(spec_path), str(result_path)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            )
            self.children.record(run.process.pid, Path(tmp))
            try:
                if run.cancel_reason:  # cancelled while downloading
                    run.stop_child()
                reader = threading.Thread(target=self._read_progress, args=(run,), daemon=True)
                reader.start()
                code = self._wait_child(run)
                kill_group(run.process.pid)  # whatever the child started and left behind
                reader.join(timeout=5)
                return self._collect(run, code, result_path, spec)
            finally:
                self.children.clear()

    def _wait_child(self, run: RunContext) -> int:
        deadline = Deadline(run.lease.timeout_seconds)
        while True:
            try:
                return run.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if deadline.passed():
                    run.stop_child()
                    run.process.wait()
                    raise _RunError(f"timeout: the run exceeded its hard timeout of "
                                    f"{run.lease.timeout_seconds} s and was stopped")

    def _collect(self, run: RunContext, code: int, result_path: Path, spec: RunSpec) -> RunResult:
        if run.cancel_reason or code == 4:
            raise _Cancelled(run.cancel_reason or "cancelled", by_server=not self.stopping.is_set())
        data = json.loads(result_path.read_text()) if result_path.exists() else {}
        if code == 0:
            result = RunResult.model_validate(data)
            loaded = (result.extra or {}).get("model_sha256")
            if loaded != run.lease.model.sha256:  # the cached file changed after it was checked
                Path(spec.model_path).unlink(missing_ok=True)
                raise _RunError(f"the model file run has sha256 {loaded}, expected "
                                f"{run.lease.model.sha256}; removed from the cache")
            return result
        if "error" in data:
            raise _RunError(data["error"])
        stderr = (run.process.stderr.read() or "").strip().splitlines()[-3:]
        raise _RunError(f"the run's process died with exit code {code}: {' | '.join(stderr)}")

    @staticmethod
    def _read_progress(run: RunContext) -> None:
        for line in run.process.stdout:
            try:
                run.progress = json.loads(line)
            except ValueError:
                continue

    def _guarded(self, loop, run: RunContext) -> None:
        """Runs a side task; if it dies unexpectedly the agent stops loudly, not limping."""
        try:
            loop(run)
        except Exception as exc:
            log.exception("%s died", threading.current_thread().name)
            self.fatal = f"{threading.current_thread().name} died: {exc}"
            run.cancel_reason = self.fatal
            run.stop_child()
            self.stopping.set()

    def _heartbeat_loop(self, run: RunContext) -> None:
        """Renew the lease at once (the run shows "running") and then every interval."""
        interval = min(self.intervals.heartbeat_seconds, self.intervals.lease_seconds / 3)
        while not run.finished.is_set():
            if not self._beat(run):
                return
            run.finished.wait(interval)

    def _beat(self, run: RunContext) -> bool:
        """One renewal; False when the run must stop being watched."""
        lease = run.lease
        try:
            answer = self.client.renew(lease.run_id, lease.lease_id, state=RunState.running,
                                       progress=run.progress)
        except Conflict:
            run.lease_lost, run.cancel_reason = True, "lease lost"
            run.stop_child()
            return False
        except (TransientError, Rejected) as exc:
            log.warning("heartbeat for run %s failed: %s", lease.run_id, exc)
            return True
        except (AccessDenied, ProtocolMismatch) as exc:
            log.error("%s", exc)
            self.fatal = run.cancel_reason = str(exc)
            run.stop_child()
            self.stopping.set()
            return False
        if answer.cancel:
            run.cancel_reason = answer.cancel_reason or "cancelled by the server"
            run.stop_child()
        return True

    def _release(self, run: RunContext) -> None:
        try:
            self.client.release(run.lease.run_id, run.lease.lease_id, "agent shutting down")
            log.info("run %s released", run.lease.run_id)
        except (TransientError, Conflict, Rejected) as exc:
            log.warning("could not release run %s: %s", run.lease.run_id, exc)

    # ------------------------------------------------------------ reports

    def flush_spool(self) -> bool:
        """Deliver every spooled report before any new work is asked for, retrying while
        the server is away; False when the agent is stopping."""
        interval = min(self.intervals.heartbeat_seconds, self.intervals.lease_seconds / 3)
        backoff = Backoff(base=0.5, cap=max(interval, 0.5))
        while not self.stopping.is_set():
            retry_after = self.deliver_spool()
            if retry_after is None:
                return True
            self.stopping.wait(backoff.next_delay(retry_after or None))
        return False

    def deliver_spool(self) -> Optional[float]:
        """Post every spooled report. None when the spool is empty; else the server is
        away and the reports are kept: the delay it asked for, or 0.

        A report the server refuses (409: its lease is no longer current, so the run
        was requeued or finished otherwise and will be measured again if needed) is
        not dropped silently: it moves to the spool's ``refused/`` folder, logged."""
        for path, run_id, report in self.spool.pending():
            try:
                self.client.report(run_id, report)
            except TransientError as exc:
                log.warning("report for run %s kept for later: %s", run_id, exc)
                return exc.retry_after or 0.0
            except (Conflict, Rejected) as exc:
                kept = self.spool.refuse(path, exc.summary)
                log.error("report for run %s (%s) refused by the server: %s; kept in %s",
                          run_id, report.state, exc.summary, kept)
                continue
            self.spool.done(path)
            log.info("report for run %s delivered", run_id)
        return None


class _RunError(Exception):
    pass


class _StopRequested(Exception):
    """Raised by the signal handler to interrupt an idle long poll."""


class _Cancelled(Exception):
    def __init__(self, reason: str, by_server: bool = True):
        super().__init__(reason)
        self.by_server = by_server
