"""Start a real ComfyUI server with this pack linked in, and talk to it over HTTP/websocket.

Used by the end-to-end tests, `make serve`, `make demo` and the benchmarks, so that all
of them exercise ComfyUI exactly as a user's browser or API client does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import comfy_runtime as rt


class ServerStartError(RuntimeError):
    pass


class PromptRejected(RuntimeError):
    """ComfyUI refused a graph at validation (HTTP 400)."""

    def __init__(self, payload: dict):
        self.payload = payload
        super().__init__(json.dumps(payload, indent=1)[:4000])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gpu_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def prepare_base_directory(base: Path, pack_folder_name: str = "comfyui-fewstep", models: Path | None = None) -> Path:
    """A ComfyUI base directory whose custom_nodes/ holds only this pack (as a link)."""
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    for sub in ("input", "output", "user", "temp"):
        (base / sub).mkdir(exist_ok=True)
    link = base / "custom_nodes" / pack_folder_name
    if not link.is_symlink() or link.resolve() != rt.REPO_ROOT:
        if link.is_symlink():
            link.unlink()
        link.symlink_to(rt.REPO_ROOT, target_is_directory=True)
    if models is not None:
        models.mkdir(parents=True, exist_ok=True)
        mlink = base / "models"
        if not mlink.is_symlink():
            mlink.symlink_to(models.resolve(), target_is_directory=True)
    else:
        (base / "models").mkdir(exist_ok=True)
    return base


def server_command(port: int, base: Path, extra_args: list[str] = ()) -> list[str]:
    cmd = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", "--base-directory", str(base)]
    if not gpu_available():
        cmd.append("--cpu")
    return cmd + list(extra_args)


@dataclass
class ComfyServer:
    """A ComfyUI `main.py` subprocess. Use as a context manager; it is always killed."""

    base: Path
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    startup_timeout: float = 240.0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> "ComfyServer":
        root = rt.find_comfyui()
        self.port = self.port or free_port()
        log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(server_command(self.port, self.base, self.extra_args), cwd=root,
                                     stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"ComfyUI exited with code {self.proc.returncode} during startup. "
                                       f"Server log ({self.log_path}):\n{self.log_text()[-6000:]}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerStartError(f"ComfyUI did not answer on {self.url} within {self.startup_timeout:.0f} s. "
                               f"Server log:\n{self.log_text()[-6000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.proc = None

    def client(self) -> "ComfyClient":
        return ComfyClient(self.url)

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class PromptResult:
    prompt_id: str
    status: str  # "success", "error" or "interrupted"
    outputs: dict
    events: list[dict]  # every websocket message for this prompt, in order
    error: dict | None = None  # the execution_error payload

    def events_of(self, kind: str) -> list[dict]:
        return [e["data"] for e in self.events if e.get("type") == kind]


class ComfyClient:
    """ComfyUI's HTTP API and websocket, as a headless API user drives them."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex

    def _request(self, path: str, payload: dict | None = None, timeout: float = 60) -> tuple[int, bytes]:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str):
        status, body = self._request(path)
        if status != 200:
            raise RuntimeError(f"GET {path} -> HTTP {status}: {body[:500]!r}")
        return json.loads(body)

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def queue(self, graph: dict) -> str:
        status, body = self._request("/prompt", {"prompt": graph, "client_id": self.client_id})
        payload = json.loads(body or b"{}")
        if status != 200:
            raise PromptRejected(payload)
        return payload["prompt_id"]

    def run(self, graph: dict, timeout: float = 600) -> PromptResult:
        """Queue `graph`, follow the websocket until it finishes, return its history entry."""
        import websocket  # websocket-client, from the dev extra

        ws = websocket.create_connection(f"{self.url.replace('http', 'ws', 1)}/ws?clientId={self.client_id}",
                                         timeout=timeout)
        try:
            prompt_id = self.queue(graph)
            events, status, error = [], None, None
            deadline = time.monotonic() + timeout
            while status is None:
                ws.settimeout(max(1.0, deadline - time.monotonic()))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")
                raw = ws.recv()
                if not isinstance(raw, str):
                    continue  # binary preview frames
                msg = json.loads(raw)
                data = msg.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                events.append(msg)
                kind = msg.get("type")
                if kind == "execution_success":
                    status = "success"
                elif kind == "execution_error":
                    status, error = "error", data
                elif kind == "execution_interrupted":
                    status = "interrupted"
        finally:
            ws.close()
        history = self.wait_for_history(prompt_id)
        return PromptResult(prompt_id, status, history.get("outputs", {}), events, error)

    def wait_for_history(self, prompt_id: str, timeout: float = 60) -> dict:
        """The server announces execution_success before its worker thread stores the history
        entry (PromptQueue.task_done runs after execute returns), so poll until it is there."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None and entry.get("status", {}).get("completed") is not None:
                return entry
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} finished but /history has no entry after {timeout} s")
            time.sleep(0.05)

    def view(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
        status, body = self._request(f"/view?{query}")
        if status != 200:
            raise RuntimeError(f"/view {filename} -> HTTP {status}")
        return body
