"""A real ``redis-server`` for the tests (the Celery broker and result backend).

The one on PATH if there is one; otherwise Debian's, unpacked once into ``.backends/redis/``
(or ``$EXECSTATUS_BACKENDS_HOME/redis``) the way ``scripts/backends`` unpacks VictoriaMetrics:
``apt-get download`` under a private apt configuration (no root, nothing installed
system-wide), ``dpkg-deb -x``, plus the libraries it links that this machine lacks, found from
the packages' ``Depends`` and checked with ``ldd``. Each server runs on a free loopback port
without persistence, in a temporary directory removed at stop, and is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.machinery
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType, TracebackType

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PACKAGES = ("redis-server", "redis-tools")
READY_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


def _backends_script() -> ModuleType:
    """``scripts/backends`` as a module (it has no ``.py`` suffix): its cache directory and
    its reading of this machine's Debian archive are reused, not copied."""
    name = "execstatus_backends_script"
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "scripts" / "backends"
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


class RedisInstall:
    """Where ``redis-server`` is and what it needs to run (a library path when unpacked)."""

    def __init__(self, binary: Path, library_path: str | None = None) -> None:
        self.binary = binary
        self.library_path = library_path

    def environment(self) -> dict[str, str]:
        if not self.library_path:
            return dict(os.environ)
        inherited = os.environ.get("LD_LIBRARY_PATH")
        joined = f"{self.library_path}:{inherited}" if inherited else self.library_path
        return {**os.environ, "LD_LIBRARY_PATH": joined}


def find_or_fetch() -> RedisInstall:
    """``redis-server`` from PATH, or Debian's, fetched on first use and reused afterwards."""
    on_path = shutil.which("redis-server")
    if on_path:
        return RedisInstall(Path(on_path))
    backends = _backends_script()
    home = Path(backends.HOME) / "redis"
    home.mkdir(parents=True, exist_ok=True)
    # One fetch at a time: tox environments run in parallel (scripts/test) share the cache.
    with (home / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        install = _unpacked(home)
        if install is None:
            _fetch(backends, home)
            install = _unpacked(home)
        if install is None:
            raise RuntimeError(f"redis-server unpacked into {home} does not run")
        return install


def _unpacked(home: Path) -> RedisInstall | None:
    """The unpacked install, if complete: marked done and every linked library found."""
    root = home / "root"
    binary = root / "usr" / "bin" / "redis-server"
    if not (home / "installed").is_file() or not binary.is_file():
        return None
    library_dirs = sorted({str(p.parent) for p in root.glob("usr/lib/**/*.so*")})
    install = RedisInstall(binary, ":".join(library_dirs) or None)
    linked = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, env=install.environment(), check=False
    )
    return install if linked.returncode == 0 and "not found" not in linked.stdout else None


def _fetch(backends: ModuleType, home: Path) -> None:
    """Download the packages and the dependencies not installed here, then unpack them."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise RuntimeError("no redis-server on PATH and no apt-get to fetch Debian's")
    archive, keyring = backends._debian_archive()
    apt = home / "apt"
    root = home / "root"
    shutil.rmtree(apt, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    (home / "installed").unlink(missing_ok=True)
    for directory in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / directory).mkdir(parents=True)
    sources = apt / "sources.list"
    sources.write_text(f"deb [signed-by={keyring}] {archive} {_debian_suite()} main\n")
    options = [
        f"-oDir::Etc::SourceList={sources}",
        "-oDir::Etc::SourceParts=/dev/null",
        f"-oDir::State::Lists={apt / 'lists'}",
        f"-oDir::Cache={apt / 'cache'}",
        "-oDebug::NoLocking=true",
        *(["-oAPT::Sandbox::User=root"] if os.geteuid() == 0 else []),
    ]
    _run(["apt-get", "-qq", *options, "update"])
    wanted, done = list(PACKAGES), set()
    while wanted:
        package = wanted.pop()
        if package in done:
            continue
        done.add(package)
        _run(["apt-get", "-qq", *options, "download", package], cwd=apt / "debs")
        (deb,) = (apt / "debs").glob(f"{package}_*.deb")
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        depends = _run(["dpkg-deb", "-f", str(deb), "Depends"])
        wanted.extend(name for name in _package_names(depends) if not _installed(name))
    (home / "installed").write_text(
        "".join(f"{deb.name}\n" for deb in sorted((apt / "debs").glob("*.deb")))
    )
    shutil.rmtree(apt)


def _debian_suite() -> str:
    """This machine's release (bookworm, trixie): its libraries match the installed ones."""
    release = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=\"?(\w+)", release, re.MULTILINE)
    if not match:
        raise RuntimeError("no VERSION_CODENAME in /etc/os-release")
    return match.group(1)


def _package_names(depends: str) -> list[str]:
    """Package names of a ``Depends`` field: the first of each alternative, no versions."""
    names = []
    for clause in depends.split(","):
        first = clause.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, maxsplit=1)[0]
        if name:
            names.append(name)
    return names


def _installed(package: str) -> bool:
    """Whether dpkg has ``package`` (or a package providing it) installed on this machine."""
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    if status.returncode == 0 and status.stdout.endswith("installed"):
        return True
    provided = subprocess.run(
        ["dpkg-query", "-W", "-f=${Provides}\n"], capture_output=True, text=True, check=False
    ).stdout
    return package in _package_names(provided.replace("\n", ","))


def _run(command: list[str], cwd: Path | None = None) -> str:
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if completed.returncode:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{completed.stderr[-4000:]}")
    return completed.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class RedisServer:
    """One ``redis-server`` on a free loopback port, without persistence, for one test
    session: started on ``__enter__`` (ready when it answers PING), stopped on ``__exit__``."""

    def __init__(self, install: RedisInstall | None = None) -> None:
        self.install = install or find_or_fetch()
        self.port = 0
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def log(self) -> Path:
        assert self.directory is not None
        return self.directory / "redis.log"

    def start(self) -> RedisServer:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="execstatus-redis-"))
        command = [
            str(self.install.binary),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--port", str(self.port), "--bind", HOST, "--dir", str(self.directory)),
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.directory,
                env=self.install.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server not answering PING:\n{self.log.read_text()}")
            time.sleep(0.05)

    def ping(self) -> bool:
        """Whether the server answers PING (inline command, raw socket: no client needed)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def flush_all(self) -> None:
        """Empty every database: a test starts without an earlier test's messages."""
        with socket.create_connection((HOST, self.port), timeout=5) as connection:
            connection.sendall(b"FLUSHALL\r\n")
            answer = connection.recv(64)
        if not answer.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL answered {answer!r}")

    def stop(self) -> None:
        """SIGTERM to the pid we started, SIGKILL if it has not exited in time."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
