"""Throwaway PostgreSQL server for the test session.

``PgCluster`` either starts a private PostgreSQL cluster (``initdb`` into a
temporary directory, trust auth, unix socket inside that directory plus TCP on
127.0.0.1 at a free port, durability switched off for speed) or, when the
environment variable ``EDGEFARM_TEST_PG_URL`` is set, reuses the server it
points at (for example one started by CI).  In both cases tests get fresh
databases through ``create_database`` / ``drop_database`` and SQLAlchemy URLs
of the form ``postgresql+psycopg://postgres@127.0.0.1:<port>/<db>``.

Environment variables:

``EDGEFARM_TEST_PG_URL``
    URL of an existing server, e.g. ``postgresql://postgres:pw@db:5432/postgres``
    (``postgresql+psycopg://`` is accepted too).  The user needs CREATEDB; the
    path names the maintenance database (default ``postgres``).
``EDGEFARM_PG_BIN``
    Directory holding ``initdb`` and ``pg_ctl``.  Default: the highest version
    under ``/usr/lib/postgresql/<ver>/bin`` (Debian/Ubuntu), then ``$PATH``.

When run as root (PostgreSQL refuses to), ``initdb``/``pg_ctl`` run as the
``postgres`` system user through ``runuser`` or ``setpriv``.

Only the standard library and psycopg (v3) are used.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ENV_URL = "EDGEFARM_TEST_PG_URL"
ENV_BIN = "EDGEFARM_PG_BIN"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"
_REQUIRED_BINARIES = ("initdb", "pg_ctl")
SHM_MIN_FREE = 1 << 30  # bytes of free tmpfs needed to put the cluster in /dev/shm


class PgClusterError(RuntimeError):
    """The cluster could not be started, reached or managed."""


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (-1,)


def find_pg_bin() -> Path | None:
    """Return the directory holding ``initdb`` and ``pg_ctl``, or None.

    ``$EDGEFARM_PG_BIN`` wins when set (and is not second-guessed: if it lacks
    the binaries the answer is None).  Otherwise the highest Debian version
    under ``/usr/lib/postgresql/<ver>/bin``, then ``initdb`` on ``$PATH``.
    """
    override = os.environ.get(ENV_BIN)
    if override:
        directory = Path(override)
        return directory if _has_binaries(directory) else None
    if DEBIAN_PG_ROOT.is_dir():
        versions = sorted(
            (p for p in DEBIAN_PG_ROOT.iterdir() if _has_binaries(p / "bin")),
            key=lambda p: _version_key(p.name),
            reverse=True,
        )
        if versions:
            return versions[0] / "bin"
    initdb = shutil.which("initdb")
    if initdb:
        directory = Path(initdb).resolve().parent
        if _has_binaries(directory):
            return directory
    return None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _privilege_drop_prefix() -> list[str] | None:
    """Command prefix running a program as the postgres user ([] if not root)."""
    if not _is_root():
        return []
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", SYSTEM_USER, "--"]
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [
            setpriv,
            f"--reuid={SYSTEM_USER}",
            f"--regid={SYSTEM_USER}",
            "--init-groups",
            "--",
        ]
    return None


def pg_available() -> tuple[bool, str]:
    """Tell whether PostgreSQL tests can run, with a human-readable reason."""
    url = os.environ.get(ENV_URL)
    if url:
        return True, f"using the server from ${ENV_URL}"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False, "psycopg (v3) is not installed in this Python environment"
    bin_dir = find_pg_bin()
    if bin_dir is None:
        if os.environ.get(ENV_BIN):
            return False, f"${ENV_BIN}={os.environ[ENV_BIN]} has no initdb/pg_ctl"
        return False, (
            "no PostgreSQL server binaries found (install Debian's `postgresql` "
            f"package, set ${ENV_BIN}, or point ${ENV_URL} at a server)"
        )
    if _privilege_drop_prefix() is None:
        return False, (
            "running as root, but PostgreSQL refuses to run as root and there is "
            f"no `{SYSTEM_USER}` system user plus runuser/setpriv to switch to it"
        )
    return True, f"starting a private cluster with {bin_dir}"


def _scratch_root() -> str:
    """Parent directory for the cluster's files.

    tmpfs (/dev/shm) when it has room: even with fsync=off, CREATE DATABASE
    takes ~250 ms on a disk but ~10 ms in memory.  Docker's default /dev/shm
    (64 MB) is too small for a cluster, hence the free-space check.  The path
    is kept short (unix socket paths are limited to ~107 bytes) and, when we
    are root, must be traversable by the postgres user.
    """
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize >= SHM_MIN_FREE and os.access(shm, os.W_OK | os.X_OK):
            return shm
    except OSError:
        pass
    tmp_root = tempfile.gettempdir()
    if _is_root() or len(tmp_root) > 40:
        tmp_root = "/tmp"
    return tmp_root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _psycopg_conninfo(url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql://...`` for libpq."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise PgClusterError(f"not a PostgreSQL URL: {scheme}://...")
    return urlunsplit(("postgresql",) + tuple(parts[1:]))


def _with_database(url: str, dbname: str, scheme: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme, parts.netloc, "/" + dbname, parts.query, ""))


class PgCluster:
    """A PostgreSQL server for tests: private (initdb) or external (env URL)."""

    def __init__(
        self,
        external_url: str | None = None,
        bin_dir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if external_url is None:
            external_url = os.environ.get(ENV_URL) or None
        self.external_url = external_url
        self.bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.base_dir: Path | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._running = False
        self._created: set[str] = set()
        self._prefix: list[str] = []

    # -- paths -------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "cluster not started"
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None, "cluster not started"
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "cluster not started"
        return self.base_dir / "postgres.log"

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> PgCluster:
        if self._running:
            return self
        began = time.monotonic()
        if self.external_url:
            self._admin_connect().close()
        else:
            self._start_private()
        self._running = True
        atexit.register(self.stop)
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        try:
            if self.external_url:
                import psycopg

                for name in sorted(self._created):
                    try:
                        self.drop_database(name)
                    except (PgClusterError, psycopg.Error) as exc:
                        warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=2)
            else:
                self._pg_ctl("stop", "-m", "immediate", "-w", check=False)
        finally:
            self._created.clear()
            self._cleanup_dir()

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start_private(self) -> None:
        bin_dir = self.bin_dir or find_pg_bin()
        if bin_dir is None:
            raise PgClusterError(pg_available()[1])
        prefix = _privilege_drop_prefix()
        if prefix is None:
            raise PgClusterError(pg_available()[1])
        self.bin_dir, self._prefix = bin_dir, prefix

        self.base_dir = Path(tempfile.mkdtemp(prefix="edgefarm-pg-", dir=_scratch_root()))
        try:
            self.socket_dir.mkdir()
            if _is_root():
                entry = pwd.getpwnam(SYSTEM_USER)
                for path in (self.base_dir, self.socket_dir):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            )
            self._start_postmaster()
        except BaseException:
            if self._running_postmaster():
                self._pg_ctl("stop", "-m", "immediate", "-w", check=False)
            self._cleanup_dir()
            raise

    def _start_postmaster(self) -> None:
        conf = self.data_dir / "postgresql.conf"
        base_conf = conf.read_text()
        last_error: Exception | None = None
        for _attempt in range(3):  # another process may grab the port meanwhile
            self.port = _free_port()
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.socket_dir}'",
                "max_connections": "200",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "log_min_messages": "warning",
            }
            extra = "".join(f"{key} = {value}\n" for key, value in settings.items())
            conf.write_text(base_conf + "\n# edgefarm test cluster\n" + extra)
            try:
                self._pg_ctl(
                    "start",
                    "-w",
                    "-t",
                    str(int(self.start_timeout)),
                    "-l",
                    str(self.log_file),
                )
                self._wait_until_ready()
                return
            except PgClusterError as exc:
                last_error = exc
                self._pg_ctl("stop", "-m", "immediate", "-w", check=False)
        assert last_error is not None
        raise last_error

    def _wait_until_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                psycopg.connect(self._admin_conninfo(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PgClusterError(
                        f"PostgreSQL did not accept connections: {exc}\n{self._log_tail()}"
                    ) from exc
                time.sleep(0.05)

    def _running_postmaster(self) -> bool:
        return self.base_dir is not None and (self.data_dir / "postmaster.pid").exists()

    def _cleanup_dir(self) -> None:
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    # -- commands ----------------------------------------------------------
    def _run(self, program: str, *args: str, check: bool = True) -> None:
        assert self.bin_dir is not None and self.base_dir is not None
        cmd = [*self._prefix, str(self.bin_dir / program), *args]
        result = subprocess.run(
            cmd,
            check=False,
            cwd=self.base_dir,  # readable by postgres, unlike e.g. /root
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        if check and result.returncode != 0:
            raise PgClusterError(
                f"{program} failed ({result.returncode}): {' '.join(cmd)}\n"
                f"{result.stdout}\n{self._log_tail()}"
            )

    def _pg_ctl(self, action: str, *args: str, check: bool = True) -> None:
        self._run("pg_ctl", action, "-D", str(self.data_dir), *args, check=check)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""
        return "--- postgres log ---\n" + "\n".join(text.splitlines()[-lines:])

    # -- URLs and databases -------------------------------------------------
    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg v3 driver) for ``dbname`` on this server."""
        if self.external_url:
            return _with_database(self.external_url, dbname, "postgresql+psycopg")
        if self.port is None:
            raise PgClusterError("cluster not started")
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _admin_conninfo(self) -> str:
        if self.external_url:
            conninfo = _psycopg_conninfo(self.external_url)
            if urlsplit(conninfo).path in ("", "/"):
                conninfo = _with_database(conninfo, "postgres", "postgresql")
            return conninfo
        return _psycopg_conninfo(self.url("postgres"))

    def _admin_connect(self):
        import psycopg

        try:
            return psycopg.connect(self._admin_conninfo(), autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            where = f"${ENV_URL}" if self.external_url else "the test cluster"
            raise PgClusterError(f"cannot connect to {where}: {exc}") from exc

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        from psycopg import sql

        with self._admin_connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.add(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, terminating any connections still open to it."""
        from psycopg import sql

        ident = sql.Identifier(name)
        with self._admin_connect() as conn:
            if conn.info.server_version >= 130000:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            else:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
        self._created.discard(name)
