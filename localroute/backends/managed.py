"""A llama.cpp server localroute starts and stops itself: a role with `backend: llamacpp` and a
local GGUF file (`model_path`) instead of an endpoint.

`llama-server` when it is on PATH (`-c` is divided among `-np` slots, so it gets context x
slots), else `python -m llama_cpp.server` (one request at a time; `--interrupt_requests False`,
because its default cuts a running stream when the next request arrives). The server binds a
free loopback port and is ready when it answers (`/health` for llama-server, `/v1/models` for
llama-cpp-python, which has no /health) and has generated one warm-up token.

No server outlives localroute: it runs under `backends/guardian.py` (Linux: PR_SET_PDEATHSIG,
so even a SIGKILLed localroute takes it along; macOS: the guardian polls its parent) in a
process group of its own; `stop()` sends SIGTERM to the group and SIGKILL after the grace
period; an atexit hook stops whatever is still running, and a SIGTERM handler (installed when
no one else handles SIGTERM, e.g. in `localroute ask`) turns SIGTERM into a normal exit so that
hook runs. The process is started from the event loop's thread on purpose: the parent-death
signal follows the *thread* that forked, and a worker thread may exit long before localroute.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from localroute.backends.activity import Activity
from localroute.backends.base import ChatRequest, ModelInfo, RawChunk, RawCompletion
from localroute.backends.http import make_client
from localroute.backends.openai_compat import OpenAICompatBackend
from localroute.config.schema import ResolvedRole
from localroute.config.telemetry import state_dir
from localroute.types import LLMConnectionError, LLMLoadError, LLMLoadTimeout

LLAMA_SERVER = "llama-server"
MANAGED_ENV = "LOCALROUTE_MANAGED_BY"  # the starting process's pid, in the server's environment
READY_POLL_S = 0.1
LOG_TAIL_CHARS = 600
ATEXIT_GRACE_S = 5.0

_live: set[ManagedLlamaCpp] = set()
_hooks_installed = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_all_now() -> None:
    """atexit: SIGTERM every live server's group, SIGKILL what is left after a grace period."""
    procs = [m.proc for m in list(_live) if m.proc is not None and m.proc.poll() is None]
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + ATEXIT_GRACE_S
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds normally, so atexit stops the servers


def _install_exit_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_stop_all_now)
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The server leads its own process group (start_new_session); it may be gone already.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class ManagedLlamaCpp:
    """One managed server: the control plane (start, stop, died) and, while it runs, the data
    plane of an OpenAI-compatible backend at its port."""

    kind = "llamacpp"
    can_unload = True

    def __init__(self, role: ResolvedRole) -> None:
        assert role.model_path is not None
        self.role = role.instance
        self.alias = role.id
        self.path = Path(role.model_path)
        self.context_length = role.instance_context_length
        self.slots = role.max_concurrency
        self.chat_format = role.chat_format
        self.threads = role.threads
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.url = f"managed://{self.alias}"
        self.log_path = state_dir() / "managed" / f"{self.role}.log"
        self._log: IO[bytes] | None = None
        self._inner: OpenAICompatBackend | None = None
        # One record of traffic across restarts: each started server's backend writes to it.
        self.activity = Activity()

    # ---- control plane -------------------------------------------------------------------

    def command(self, port: int) -> tuple[list[str], str]:
        """The server's argv and the path that answers 200 once the model is loaded."""
        common_host = ["--host", "127.0.0.1", "--port", str(port)]
        server = shutil.which(LLAMA_SERVER)
        if server is not None:
            argv = [server, "-m", str(self.path), "--alias", self.alias, *common_host,
                    "-c", str(self.context_length * self.slots), "-np", str(self.slots)]
            if self.threads:
                argv += ["-t", str(self.threads)]
            if self.chat_format:
                argv += ["--chat-template", self.chat_format]
            return argv, "/health"
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.path),
                "--model_alias", self.alias, *common_host, "--n_ctx", str(self.context_length),
                "--interrupt_requests", "False"]
        if self.threads:
            argv += ["--n_threads", str(self.threads)]
        if self.chat_format:
            argv += ["--chat_format", self.chat_format]
        return argv, "/v1/models"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self._inner is not None

    def died(self) -> str | None:
        if self.proc is not None and self._inner is not None:
            code = self.proc.poll()
            if code is not None:
                return f"the managed server (pid {self.proc.pid}) {_exit_reason(code)}"
        return None

    def _load_error(self, message: str, timeout: bool = False) -> LLMLoadError:
        kind = LLMLoadTimeout if timeout else LLMLoadError
        return kind(f"role '{self.role}' (managed llama.cpp server for {self.path}): {message}",
                    role=self.role, model=self.alias, url=self.url)

    def _log_tail(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = " ".join(text[-LOG_TAIL_CHARS:].split())
        return f"; its log ({self.log_path}) ends: {tail}" if tail else ""

    def _spawn(self, port: int) -> str:
        argv, ready_path = self.command(port)
        guarded = [sys.executable, "-m", "localroute.backends.guardian",
                   "--parent", str(os.getpid()), "--", *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # Spawned on the event loop's thread (see the module docstring), never in a worker.
        self.proc = subprocess.Popen(guarded, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, MANAGED_ENV: str(os.getpid())})
        self.port = port
        _install_exit_hooks()
        _live.add(self)
        return ready_path

    async def load(self, timeout: float) -> float | None:
        """Start the server and wait until it answers; the seconds that took."""
        if self.running():
            return None
        if not self.path.is_file():
            raise self._load_error("model_path does not exist or is not a file; point it at a "
                                   "local .gguf file")
        started = time.perf_counter()
        port = free_port()
        ready_path = self._spawn(port)
        base = f"http://127.0.0.1:{port}"
        ok = False
        try:
            async with make_client(2.0) as http:
                while True:
                    assert self.proc is not None
                    code = self.proc.poll()
                    if code is not None:
                        raise self._load_error(f"the server {_exit_reason(code)} while starting"
                                               + self._log_tail())
                    try:
                        if (await http.get(base + ready_path)).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.perf_counter() - started > timeout:
                        raise self._load_error(f"not answering after load_timeout {timeout:g} s "
                                               "(raise the role's load_timeout for a large "
                                               "model)" + self._log_tail(), timeout=True)
                    await asyncio.sleep(READY_POLL_S)
                # One chat token before the first request: the weights are mapped lazily and
                # the first chat evaluation pages them in and builds the chat template
                # (seconds on a small machine), which belongs to the load, not to a request.
                left = max(1.0, timeout - (time.perf_counter() - started))
                try:
                    await http.post(base + "/v1/chat/completions", timeout=left,
                                    json={"model": self.alias, "max_tokens": 1,
                                          "messages": [{"role": "user", "content": "Hi"}]})
                except httpx.TimeoutException:
                    raise self._load_error(f"the warm-up token took past load_timeout "
                                           f"{timeout:g} s", timeout=True) from None
                except httpx.HTTPError:
                    pass  # the server answers; a failed warm-up only costs the first request
            self._inner = OpenAICompatBackend("llamacpp", base + "/v1")
            self._inner.activity = self.activity
            self.url = base + "/v1"
            ok = True
            return time.perf_counter() - started
        finally:
            if not ok:  # failed, timed out or cancelled: the half-started server goes too
                await self.unload(grace=2.0)

    async def unload(self, grace: float) -> None:
        """SIGTERM the server's group, SIGKILL after `grace` seconds; returns once it is gone."""
        proc, inner, log = self.proc, self._inner, self._log
        self.proc, self._inner, self._log = None, None, None
        self.url = f"managed://{self.alias}"
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                deadline = time.monotonic() + grace
                while proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if proc.poll() is None:
                    _signal_group(proc, signal.SIGKILL)
                    while proc.poll() is None:
                        await asyncio.sleep(0.05)
            _live.discard(self)
        if inner is not None:
            await inner.aclose()
        if log is not None:
            log.close()

    async def probe(self) -> bool | None:
        return self.running()

    async def liveness(self, timeout: float) -> str | None:
        """A stopped server is fine (it starts on demand) and is never started by a probe; a
        dead one is down; a running one answers its liveness check."""
        died = self.died()
        if died is not None:
            return died
        if self._inner is None:
            return None
        return await self._inner.liveness(timeout)

    # ---- data plane ----------------------------------------------------------------------

    def _backend(self, role: str) -> OpenAICompatBackend:
        if self._inner is None:
            raise LLMConnectionError(
                f"role '{role or self.role}': the managed llama.cpp server for {self.path} is not "
                "running (the residency manager starts it before a call)",
                role=role or self.role, model=self.alias, url=self.url)
        return self._inner

    async def chat(self, request: ChatRequest, role: str = "") -> RawCompletion:
        return await self._backend(role).chat(request, role)

    async def stream(self, request: ChatRequest, role: str = "") -> AsyncIterator[RawChunk]:
        async for chunk in self._backend(role).stream(request, role):
            yield chunk

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int | None:
        if self._inner is None:
            return None  # counting must not start a server: the estimate stands
        return await self._inner.count_tokens(model, messages)

    async def list_models(self) -> list[ModelInfo]:
        """Never starts the server: a stopped one is listed as served but not loaded."""
        size = self.path.stat().st_size if self.path.is_file() else None
        return [ModelInfo(id=self.alias, loaded=self.running(),
                          context_length=self.context_length, size_bytes=size,
                          details={"path": str(self.path), "pid": self.pid, "url": self.url})]

    async def aclose(self) -> None:
        await self.unload(grace=ATEXIT_GRACE_S)
