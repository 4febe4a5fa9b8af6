"""Where the image lives in Artifact Registry, read from image/registry.yaml (its one place)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from microscopy_notebook.paths import ROOT

FILE = ROOT / "image" / "registry.yaml"


@dataclass(frozen=True)
class Registry:
    project: str
    region: str
    repository: str
    name: str
    tag: str

    @property
    def host(self) -> str:
        return f"{self.region}-docker.pkg.dev"

    def uri(self, tag: str | None = None) -> str:
        """The image's full name with a tag (default: the one the Batch profile runs)."""
        return f"{self.host}/{self.project}/{self.repository}/{self.name}:{tag or self.tag}"


def load(path: Path = FILE) -> Registry:
    return Registry(**{k: str(v) for k, v in yaml.safe_load(path.read_text()).items()})
