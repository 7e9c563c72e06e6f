"""A private PostgreSQL server for fault tests: its own data folder in /tmp, its own port,
started and stopped by the test (`initdb` and `pg_ctl` of the Debian PostgreSQL binaries), so
stopping it touches nothing else. The shared server on 5432 is never touched here.

PostgreSQL refuses to run as root: when the tests run as root, the server's commands run as
the `postgres` system user (`runuser`), and its folder is handed to that user."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from tests.waiting import wait_for

__all__ = ["PG_BIN", "PrivatePostgres"]

PG_BIN = Path(os.environ.get("DASH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
_RUN_AS = "postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivatePostgres:
    """One private server: `start()`, then `dsn()`, `stop()`/`start()` as a test needs, and
    `destroy()` at the end (stops it, removes its folder). The role `dash` (not a superuser,
    so it can be refused when connections run out) owns the database `dash`."""

    def __init__(self, *, max_connections: int = 20, superuser_reserved: int = 3) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN} (set DASH_TEST_PG_BIN)")
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dash-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.sockets.mkdir()
        self.logfile = self.root / "server.log"
        self._as_user = os.geteuid() == 0
        if self._as_user:
            user = pwd.getpwnam(_RUN_AS)
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                         f"-c max_connections={max_connections} "
                         f"-c superuser_reserved_connections={superuser_reserved} "
                         "-c fsync=on -c log_min_messages=warning")
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--no-sync", "--locale=C"])
        self.running = False

    def _run(self, command: list[str], *, timeout: float = 60.0) -> None:
        if self._as_user:
            command = ["runuser", "-u", _RUN_AS, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}\n{log}")

    def dsn(self, user: str = "dash", dbname: str = "dash", **params: Any) -> str:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}?connect_timeout=2{extra}"

    def admin(self) -> psycopg.Connection[Any]:
        """A superuser connection (it may use the reserved slots)."""
        return psycopg.connect(self.dsn("postgres", "postgres"), autocommit=True)

    def start(self) -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                   "-o", self._options, "-w", "-t", "60", "start"])
        self.running = True
        with self.admin() as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'dash'").fetchone() is None:
                conn.execute("CREATE ROLE dash LOGIN")
                conn.execute("CREATE DATABASE dash OWNER dash")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clients are disconnected, a clean shutdown) or
        `immediate` (like a crash: recovery replays its log on the next start)."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])
        self.running = False

    def terminate(self, user: str = "dash") -> int:
        """Disconnect every backend of `user`; returns how many were told to go."""
        with self.admin() as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE usename = %s AND pid <> pg_backend_pid()", (user,)).fetchall()
        return len(rows)

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        with contextlib.suppress(AssertionError):  # the folder goes all the same
            wait_for(lambda: not (self.data / "postmaster.pid").exists(), timeout=10, every=0.1,
                     what="PostgreSQL to let go of its data folder")
        shutil.rmtree(self.root, ignore_errors=True)
