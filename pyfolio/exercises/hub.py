"""Deliver assignments to students on a JupyterHub and collect them, through its REST API.

Works on any hub (The Littlest JupyterHub, Zero to JupyterHub, the local one of the tests)
with an API token whose scopes include ``admin:users``, ``admin:servers`` and
``access:servers`` (a service token; book/instructor.md shows how to make one). Each
student's notebook goes into their own server through the Jupyter server's contents API;
collection copies it back into nbgrader's ``submitted/STUDENT/ASSIGNMENT/``. The same client
can run a notebook in a student's own kernel (the hub test and the capacity bench do).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HubClient", "KernelRun", "deliver", "collect"]


@dataclass
class KernelRun:
    """What executing code in a kernel produced: outputs (nbformat dicts), the error name
    if it failed, and the time from request to reply (seconds)."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    execution_count: int | None = None


class HubClient:
    """A JupyterHub's REST API and, through its proxy, each user's Jupyter server API."""

    def __init__(self, url: str, token: str, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # -- HTTP -------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> Any:
        """JSON in, JSON out; ``path`` from the hub's root (``/hub/api/users``)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: HTTP {e.code} {e.read()[:300]!r}") from None
        return json.loads(raw) if raw else None

    def _user_api(self, user: str, path: str) -> str:
        return f"/user/{urllib.parse.quote(user)}/api/{path}"

    # -- users and servers ------------------------------------------------------------------
    def create_users(self, names: list[str]) -> None:
        """POST /hub/api/users (existing users are kept)."""
        existing = {u["name"] for u in self.request("GET", "/hub/api/users")}
        new = [n for n in names if n not in existing]
        if new:
            self.request("POST", "/hub/api/users", {"usernames": new})

    def start_servers(self, names: list[str], wait: float = 180.0) -> None:
        """Ask the hub to spawn each user's server that is not running, then wait until all
        are ready."""
        for n in names:
            model = self.request("GET", f"/hub/api/users/{urllib.parse.quote(n)}")
            if "" not in model.get("servers", {}):
                self.request("POST", f"/hub/api/users/{urllib.parse.quote(n)}/server")
        deadline = time.monotonic() + wait
        pending = set(names)
        while pending:
            for n in sorted(pending):
                model = self.request("GET", f"/hub/api/users/{urllib.parse.quote(n)}")
                if model.get("servers", {}).get("", {}).get("ready"):
                    pending.discard(n)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"servers not ready after {wait:.0f} s: {sorted(pending)}")
            if pending:
                time.sleep(0.5)

    def stop_servers(self, names: list[str]) -> None:
        for n in names:
            try:
                self.request("DELETE", f"/hub/api/users/{urllib.parse.quote(n)}/server")
            except RuntimeError:
                pass  # already stopped

    # -- files --------------------------------------------------------------------------------
    def put_notebook(self, user: str, path: str, nb: dict[str, Any]) -> None:
        """Save ``nb`` at ``path`` in the user's server (creating its directories)."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            try:
                self.request("PUT", self._user_api(user, f"contents/{d}"),
                             {"type": "directory"})
            except RuntimeError:
                pass  # exists
        self.request("PUT", self._user_api(user, f"contents/{path}"),
                     {"type": "notebook", "format": "json", "content": nb})

    def get_notebook(self, user: str, path: str) -> dict[str, Any]:
        model = self.request("GET", self._user_api(user, f"contents/{path}?content=1"))
        content: dict[str, Any] = model["content"]
        return content

    # -- kernels --------------------------------------------------------------------------------
    def start_kernel(self, user: str, path: str) -> str:
        """A session (and kernel) for the notebook at ``path``: the kernel runs in its
        directory, as when the student opens it. Returns the kernel id."""
        s = self.request("POST", self._user_api(user, "sessions"), {
            "path": path, "type": "notebook", "name": path.rsplit("/", 1)[-1],
            "kernel": {"name": "python3"}})
        return str(s["kernel"]["id"])

    def execute(self, user: str, kernel: str, codes: list[str]) -> list[KernelRun]:
        """Run each piece of code in the user's kernel, in order, over its websocket."""
        return asyncio.run(self._execute(user, kernel, codes))

    async def _execute(self, user: str, kernel: str, codes: list[str]) -> list[KernelRun]:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ws_url = self.url.replace("http", "ws", 1) + self._user_api(
            user, f"kernels/{kernel}/channels")
        conn = await websocket_connect(HTTPRequest(
            ws_url, headers={"Authorization": f"token {self.token}"},
            request_timeout=self.timeout))
        session = uuid.uuid4().hex
        runs = []
        try:
            for code in codes:
                runs.append(await self._run_one(conn, session, code))
        finally:
            conn.close()
        return runs

    async def _run_one(self, conn: Any, session: str, code: str) -> KernelRun:
        msg_id = uuid.uuid4().hex
        run = KernelRun()
        start = time.perf_counter()
        await conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "hub-client", "session": session,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False,
                        "stop_on_error": True}}))
        replied = idle = False
        while not (replied and idle):
            raw = await asyncio.wait_for(conn.read_message(), self.timeout)
            if raw is None:
                raise RuntimeError("the kernel's websocket closed")
            msg = _decode(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "execute_reply":
                replied = True
                run.execution_count = content.get("execution_count")
                if content.get("status") == "error":
                    run.error = content.get("ename", "error")
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "stream":
                run.outputs.append({"output_type": "stream", "name": content["name"],
                                    "text": content["text"]})
            elif kind in ("execute_result", "display_data"):
                out = {"output_type": kind, "data": content["data"],
                       "metadata": content.get("metadata", {})}
                if kind == "execute_result":
                    out["execution_count"] = content.get("execution_count")
                run.outputs.append(out)
            elif kind == "error":
                run.outputs.append({"output_type": "error", "ename": content["ename"],
                                    "evalue": content["evalue"],
                                    "traceback": content["traceback"]})
        run.seconds = time.perf_counter() - start
        return run

    def run_notebook(self, user: str, path: str, nb: dict[str, Any]) -> dict[str, Any]:
        """Execute every code cell of ``nb`` in a new kernel of the user's server, store the
        outputs in it and save it at ``path`` (what a student's Run All and save do)."""
        self.put_notebook(user, path, nb)
        kernel = self.start_kernel(user, path)
        try:
            cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
            for cell, run in zip(cells, self.execute(user, kernel, [
                    "".join(c["source"]) for c in cells]), strict=True):
                cell["outputs"], cell["execution_count"] = run.outputs, run.execution_count
        finally:
            self.request("DELETE", self._user_api(user, f"kernels/{kernel}"))
        self.put_notebook(user, path, nb)
        return nb


def _decode(raw: str | bytes) -> dict[str, Any]:
    """A kernel message from the websocket: JSON text, or a binary frame (a message with
    buffers: a count, offsets, the JSON, the buffers; jupyter_server's legacy format)."""
    if isinstance(raw, str):
        msg: dict[str, Any] = json.loads(raw)
        return msg
    n = int.from_bytes(raw[:4], "big")
    offsets = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(n)]
    msg = json.loads(raw[offsets[0]: offsets[1] if n > 1 else None])
    return msg


def deliver(client: HubClient, course: Path | str, assignment: str,
            students: list[str]) -> list[str]:
    """Copy ``course/instances/STUDENT/ASSIGNMENT/*.ipynb`` into each student's server, at
    ``ASSIGNMENT/NAME.ipynb`` (their servers must be running). Returns the paths written."""
    done = []
    for s in students:
        for nb in sorted((Path(course) / "instances" / s / assignment).glob("*.ipynb")):
            path = f"{assignment}/{nb.name}"
            client.put_notebook(s, path, json.loads(nb.read_text()))
            done.append(f"{s}:{path}")
    if not done:
        raise ValueError(f"no instances of {assignment} under {course}/instances: run "
                         f"`python -m pyfolio.exercises instances` first")
    return done


def collect(client: HubClient, course: Path | str, assignment: str,
            students: list[str]) -> list[Path]:
    """Copy each student's ``ASSIGNMENT/*.ipynb`` (as delivered) into nbgrader's
    ``course/submitted/STUDENT/ASSIGNMENT/``. Returns the files written."""
    out = []
    for s in students:
        for nb in sorted((Path(course) / "instances" / s / assignment).glob("*.ipynb")):
            dest = Path(course) / "submitted" / s / assignment / nb.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(json.dumps(client.get_notebook(s, f"{assignment}/{nb.name}"),
                                       indent=1) + "\n")
            out.append(dest)
    return out
