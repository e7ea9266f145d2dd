"""The package as a user installs it: the wheel built from this checkout, installed alone into a
fresh virtual environment outside the checkout, runs the everyday commands from there.

Nothing of the checkout is importable from the commands' working directory, so a data file or
module that the wheel lacks (or that lives only beside the repository) fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localroute.routing.classifier import PACKAGED_ARTIFACT, RouteClassifier
from tests.support.paths import REPO
from tests.support.servers import free_port, stop_process, wait_for_http

pytestmark = pytest.mark.slow

# Build flags for llama-cpp-python in case pip's wheel cache does not hold it yet (the same as
# .ci/run; normally the cached wheel is reused and nothing compiles).
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DGGML_BLAS=OFF -DGGML_METAL=OFF "
              "-DGGML_CUDA=OFF -DLLAMA_CURL=OFF")
INSTALL_TIMEOUT_S = 3600  # a cold pip cache compiles llama.cpp (~20 min on two cores)


class Installed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / "bin"
        self.work = root / "work"  # the commands' working directory: not the checkout
        self.work.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "LOCALROUTE_CONFIG", "LOCALROUTE_PROFILE",
                                 "VIRTUAL_ENV")}
        self.env.update(LOCALROUTE_STATE_DIR=str(root / "state"),
                        PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "localroute"), *args], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(REPO)], check=True, timeout=INSTALL_TIMEOUT_S)
    (wheel,) = dist.glob("localroute-*.whl")
    venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    subprocess.run([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q",
                    "-c", str(REPO / "constraints.txt"), str(wheel)],
                   check=True, timeout=INSTALL_TIMEOUT_S, env=env, cwd=root)
    yield Installed(root)


def test_the_package_is_imported_from_the_new_environment(installed: Installed) -> None:
    done = subprocess.run([str(installed.bin / "python"), "-c",
                           "import localroute; print(localroute.__file__)"],
                          cwd=installed.work, env=installed.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    where = Path(done.stdout.strip())
    assert where.is_relative_to(installed.root / "venv"), where
    assert not where.is_relative_to(REPO)


def test_ask_answers_on_the_embedded_profile(installed: Installed) -> None:
    done = installed.run("--profile", "embedded", "ask", "What is the capital of France?",
                         "--json")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["state"] == "COMPLETED", reply
    assert reply["route"] == "router" and reply["reply"].strip()


def test_bench_math_runs_one_packaged_problem(installed: Installed) -> None:
    out = installed.root / "run-math"
    done = installed.run("bench", "math", "--role", "router", "--limit", "1", "--profile",
                         "embedded", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    rows = (out / "samples.jsonl").read_text().splitlines()
    assert len(rows) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    # The problems came from the installed package, not from anything beside the checkout.
    dataset = Path(manifest["dataset"]["path"])
    assert dataset.is_relative_to(installed.root / "venv"), dataset


def test_train_router_reproduces_the_packaged_classifier(installed: Installed) -> None:
    out = installed.root / "route_classifier.joblib"
    done = installed.run("train-router", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # Same training rows and parameters as the artifact that ships: the same fingerprint.
    assert report["artifact_id"] == RouteClassifier.load().artifact_id()
    assert report["n_dev"] > 0 and report["n_handwritten"] > 0
    # ... and the same bytes: the installed package alone rebuilds the artifact it ships.
    assert out.read_bytes() == PACKAGED_ARTIFACT.read_bytes()


def test_status_and_plan_print_json(installed: Installed) -> None:
    status = installed.run("status", "--json", "--profile", "embedded")
    assert status.returncode == 0, status.stderr
    assert "mode" in json.loads(status.stdout)
    plan = installed.run("plan", "--json", "--profile", "embedded")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["roles"]


def test_serve_answers_health(installed: Installed) -> None:
    port = free_port()
    proc = subprocess.Popen([str(installed.bin / "localroute"), "serve", "--profile", "embedded",
                             "--port", str(port)], cwd=installed.work, env=installed.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc, 120, "localroute serve")
        body = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert body["status"] == "ok" and body["profile"] == "embedded"
    finally:
        stop_process(proc)
