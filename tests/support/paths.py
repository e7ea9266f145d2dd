"""Where the tests find their data: the copies packaged with localroute (the product needs them
too, so the tests read nothing outside the repository)."""

from pathlib import Path

from localroute.evaluation.suites.base import DEFAULT_DATA_DIR
from localroute.routing.training import DEFAULT_DEV_PATH

REPO = Path(__file__).resolve().parents[2]
EVAL_DATA = DEFAULT_DATA_DIR  # math500_subset.jsonl, code_subset.jsonl, system_scenarios.jsonl
DEV_SET = DEFAULT_DEV_PATH  # routing_dev.jsonl
