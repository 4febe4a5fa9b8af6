"""Where the repository's artifacts are: the one place that knows the checkout's layout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the editable install points into the checkout
BOOK = ROOT / "book"
WORKFLOW = ROOT / "workflow"
IMAGE = ROOT / "image"
CACHE = ROOT / ".cache"  # pinned downloads, never committed
ARTIFACTS = ROOT / "artifacts"  # what tests and benchmarks leave for people to look at
