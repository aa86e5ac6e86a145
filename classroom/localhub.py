"""A JupyterHub on localhost for the tests, the capacity bench and a first try-out.

JupyterHub with its proxy (configurable-http-proxy, installed from npm by ``make classroom``
into .venv/classroom-node), the DummyAuthenticator (a test authenticator: any password) and
SimpleLocalProcessSpawner (each user's server is a local process under the hub's user, with
its home in the hub's directory): no system users, no containers, only 127.0.0.1.

    python classroom/localhub.py --users 3     # prints the URL and an admin API token

``LocalHub`` is a context manager; leaving it stops every server, the hub and the proxy.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
#: where `make classroom` installs configurable-http-proxy
CHP = ROOT / ".venv" / "classroom-node" / "node_modules" / ".bin" / "configurable-http-proxy"

CONFIG = """\
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{dir}/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.Spawner.environment = {{"JUPYTER_PATH": {jupyter_path!r}}}
c.JupyterHub.services = [{{"name": "classroom-admin", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "classroom-admin",
    "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"],
    "services": ["classroom-admin"],
}}]
"""


def missing() -> str | None:
    """Why a local hub cannot start here (a component is not installed), or None."""
    if shutil.which("jupyterhub", path=str(VENV_BIN)) is None:
        return "jupyterhub is not installed in this environment (make classroom)"
    if shutil.which("jupyterhub-singleuser", path=str(VENV_BIN)) is None:
        return "jupyterhub-singleuser is not installed in this environment (make classroom)"
    if not CHP.exists():
        return (f"configurable-http-proxy is not installed at {CHP} (make classroom: needs "
                f"npm)")
    if shutil.which("node") is None:
        return "node is not installed (configurable-http-proxy needs it)"
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        return "nbgrader is not installed in this environment (make classroom)"
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalHub:
    """Start a hub on free localhost ports in a temporary directory; ``url``, ``token``."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="localhub-")
        self.dir = Path(directory or self._tmp.name)  # type: ignore[union-attr]
        self.port, hub_port, api_port = _free_ports(3)
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.password = secrets.token_hex(8)
        self.proc: subprocess.Popen[bytes] | None = None
        (self.dir / "home").mkdir(parents=True, exist_ok=True)
        args = ["--allow-root"] if os.geteuid() == 0 else []
        (self.dir / "jupyterhub_config.py").write_text(CONFIG.format(
            port=self.port, hub_port=hub_port, proxy_api_port=api_port, chp=str(CHP),
            dir=self.dir, password=self.password, token=self.token,
            singleuser=str(VENV_BIN / "jupyterhub-singleuser"), args=args,
            jupyter_path=str(Path(sys.prefix) / "share" / "jupyter")))

    def start(self, timeout: float = 60.0) -> LocalHub:
        log = (self.dir / "jupyterhub.log").open("wb")
        env = {k: v for k, v in os.environ.items() if k != "PYFOLIO_SECRET"}  # not for students
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(self.dir / "jupyterhub_config.py")],
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)  # its own process group: stop() ends all it started
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/hub/api/", timeout=2):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the hub did not start:\n" + self.log()[-3000:]) from None
                time.sleep(0.3)

    def log(self) -> str:
        p = self.dir / "jupyterhub.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        """SIGTERM to the hub (it stops the servers it spawned and its proxy), then to its
        whole process group, SIGKILL after 20 s."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the hub leads its group
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            time.sleep(1)
        self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=2, help="students to create (student1..N)")
    args = ap.parse_args()
    why = missing()
    if why:
        print(f"localhub: {why}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from pyfolio.exercises.hub import HubClient

    with LocalHub() as hub:
        names = [f"student{i}" for i in range(1, args.users + 1)]
        HubClient(hub.url, hub.token).create_users(names)
        print(f"hub: {hub.url}  (users {', '.join(names)}; password {hub.password})")
        print(f"admin API token: {hub.token}\nCtrl-C stops it.")
        try:
            while hub.proc is not None and hub.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
