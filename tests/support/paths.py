"""Where the shared data lives: `shared/` sits beside the repository (here and in CI)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
