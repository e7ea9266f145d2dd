"""Promote and rollback: the rules, the byte-exact round trip of models.yaml, check-rollback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from localroute.cli.main import run
from localroute.config.loader import PACKAGED_MODELS, load_config, resolve_profile
from localroute.evaluation.promotion import history as history_mod
from localroute.evaluation.promotion.history import History, HistoryError, check_editable
from localroute.evaluation.promotion.promote import estimate_memory, promote, rollback
from localroute.evaluation.suites.base import Grade
from localroute.evaluation.suites.store import (
    RunManifest,
    RunStore,
    SampleError,
    SampleRow,
    sample_key,
)

CONFIG = """# my stack -- comments must survive a promotion and a rollback
version: 1
auto_profiles: [p]

profiles:
  p:
    roles:
      router:
        id: qwen/qwen3-4b-2507   # the small one
        backend: lmstudio
        endpoint: http://127.0.0.1:9/v1
        quantization: 8bit
      reasoning:
        id: "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"  # quoted on purpose
        backend: lmstudio
        endpoint: http://127.0.0.1:9/v1
        quantization: 8bit
        reasoning: true
      validation:
        shares_instance_with: router
"""
NEW = "acme/reasoner-12b"


def make_run(root: Path, model: str, correct: int, total: int = 10, errors: int = 0) -> Path:
    store = RunStore(root)
    items = [f"i{n}" for n in range(total)]
    store.write_manifest(RunManifest(
        run_id=root.name, created_at="2026-01-01T00:00:00+00:00", suite="math", role="reasoning",
        model=model, backend="lmstudio", endpoint=None, quantization="8bit", profile="p",
        config_file="x", sampling={}, samples_per_item=1, limit=None, items=items,
        dataset={"path": "d", "sha256": "0"}, grader_version="g", config_hash="h",
        git_commit="c", localroute_version="0"))
    for n, item in enumerate(items):
        failed = n < errors
        store.append(SampleRow(
            key=sample_key("math", item, 0, model, "h"), suite="math", item_id=item, sample=0,
            model=model, config_hash="h", role="reasoning", messages=[],
            grade=None if failed else Grade(correct=n < errors + correct, verdict="v"),
            error=SampleError(kind="LLMTimeout", message="slow") if failed else None,
            latency_s=1.0))
    return root


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_bytes(CONFIG.encode())
    return path


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Done]:
    """The real CLI entry point in-process (exit codes and all), without a subprocess's startup."""

    def invoke(config: Path, *args: str) -> Done:
        monkeypatch.setattr(sys, "argv", ["localroute", "--config", str(config), "--profile", "p",
                                          *args])
        with pytest.raises(SystemExit) as exc:
            run()
        captured = capsys.readouterr()
        return Done(int(exc.value.code or 0), captured.out, captured.err)

    return invoke


def test_promote_then_rollback_restores_the_file_byte_for_byte(
        config: Path, tmp_path: Path, cli: Callable[..., Done]) -> None:
    evidence = make_run(tmp_path / "good", NEW, correct=10)
    done = cli(config, "promote", "reasoning", "--model", NEW, "--evidence", str(evidence))
    assert done.returncode == 0, done.stderr
    changed = config.read_text()
    # Only the value changed: comments, quoting elsewhere and layout are untouched.
    assert changed == CONFIG.replace('"deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"', NEW)
    cfg, source = load_config(config)
    assert resolve_profile(cfg, "p", source, env={}).role("reasoning").id == NEW
    entries = History(config).entries()
    assert len(entries) == 1 and entries[0].to_model == NEW
    assert entries[0].evidence["accuracy"]["rate"] == 1.0
    undo = cli(config, "rollback", "reasoning")
    assert undo.returncode == 0, undo.stderr
    assert config.read_bytes() == CONFIG.encode()
    assert [e.action for e in History(config).entries()] == ["promote", "rollback"]
    again = cli(config, "rollback", "reasoning")
    assert again.returncode == 2 and "no promotion of role 'reasoning'" in again.stderr


@pytest.mark.parametrize(("model", "correct", "errors", "failing"), [
    (NEW, 8, 0, "accuracy >= 90%"),
    (NEW, 9, 1, "no inference failures"),
    ("acme/huge-80b", 10, 0, "memory estimate <= 25 GB"),
])
def test_promotion_rules_refuse(config: Path, tmp_path: Path, model: str, correct: int,
                                errors: int, failing: str) -> None:
    evidence = make_run(tmp_path / "run", model, correct=correct, errors=errors)
    cfg, source = load_config(config)
    decision = promote(config, resolve_profile(cfg, "p", source, env={}), "reasoning", model,
                       evidence)
    assert not decision.allowed
    assert [r.name for r in decision.rules if not r.ok] == [failing]
    assert config.read_bytes() == CONFIG.encode() and not History(config).entries()


def test_evidence_must_measure_the_candidate(config: Path, tmp_path: Path,
                                             cli: Callable[..., Done]) -> None:
    evidence = make_run(tmp_path / "run", "someone/else-7b", correct=10)
    refused = cli(config, "promote", "reasoning", "--model", NEW, "--evidence", str(evidence))
    assert refused.returncode == 1 and "evidence is for this model" in refused.stdout
    assert config.read_bytes() == CONFIG.encode()


def test_rollback_refuses_when_the_file_changed_since(config: Path, tmp_path: Path) -> None:
    cfg, source = load_config(config)
    promote(config, resolve_profile(cfg, "p", source, env={}), "reasoning", NEW,
            make_run(tmp_path / "run", NEW, correct=10))
    config.write_text(config.read_text() + "# later edit\n")
    with pytest.raises(HistoryError, match="changed after promotion #1"):
        rollback(config, "p", "reasoning")
    rollback(config, "p", "reasoning", force=True)
    assert config.read_bytes() == CONFIG.encode()


def test_a_sharing_role_cannot_be_promoted(config: Path, tmp_path: Path) -> None:
    cfg, source = load_config(config)
    with pytest.raises(HistoryError, match="shares the instance of 'router'"):
        promote(config, resolve_profile(cfg, "p", source, env={}), "validation", NEW,
                make_run(tmp_path / "run", NEW, correct=10), budget_gb=100)


def test_installed_default_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    note = check_editable(PACKAGED_MODELS)  # this checkout is writable: allowed, with a note
    assert note is not None and "source checkout" in note
    monkeypatch.setattr(history_mod, "_install_dirs", lambda: [PACKAGED_MODELS.parent.parent])
    with pytest.raises(HistoryError, match="packaged default inside the installed package"):
        check_editable(PACKAGED_MODELS)


def test_check_rollback_exit_codes(config: Path, tmp_path: Path,
                                   cli: Callable[..., Done]) -> None:
    model = "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    healthy = cli(config, "check-rollback", "reasoning", "--evidence",
                  str(make_run(tmp_path / "ok", model, correct=9)))
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    low = cli(config, "check-rollback", "reasoning", "--json", "--evidence",
              str(make_run(tmp_path / "low", model, correct=7)))
    assert low.returncode == 3 and '"triggered": true' in low.stdout
    failing = cli(config, "check-rollback", "reasoning", "--evidence",
                  str(make_run(tmp_path / "err", model, correct=9, errors=1)))
    assert failing.returncode == 3 and "inference failures" in failing.stdout
    latest = cli(config, "check-rollback", "reasoning", "--runs", str(tmp_path))
    assert latest.returncode in (0, 3) and str(tmp_path) in latest.stdout


def test_memory_estimate() -> None:
    assert estimate_memory("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "8bit").gb == 14.0
    assert estimate_memory("qwen/qwen3-next-80b", "8bit").gb == 80.0
    assert estimate_memory("SmolLM2-135M-Instruct.Q4_1", "Q4_1").gb == pytest.approx(0.08, 0.1)
    unknown = estimate_memory("mistralai/devstral-small-2-2512", "8bit")
    assert unknown.gb is None and "--params-b" in unknown.note
    assert estimate_memory("mistralai/devstral-small-2-2512", "8bit", params_b=24).gb == 24.0
