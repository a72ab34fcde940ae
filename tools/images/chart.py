"""The image names the Helm chart's defaults give, fully qualified as a container
runtime resolves them (`redis:7.4.2-alpine` is docker.io/library/redis:7.4.2-alpine):
a tarball saved under these names is found by the kubelet after `ctr images import`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "zyra-orchestrator"


def qualified(ref: str) -> str:
    """Docker's normalisation of an image reference (its familiar name expanded)."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


@dataclass(frozen=True)
class ChartImages:
    api: str  # repository:appVersion
    runner: str
    redis: str
    minio: str

    @classmethod
    def defaults(cls, chart: Path = CHART) -> ChartImages:
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        values = yaml.safe_load((chart / "values.yaml").read_text())
        tag = str(meta["appVersion"])  # the chart's default for an empty image tag
        api_tag = values["image"]["tag"] or tag
        runner_tag = values["runner"]["image"]["tag"] or tag
        return cls(
            api=qualified(f"{values['image']['repository']}:{api_tag}"),
            runner=qualified(f"{values['runner']['image']['repository']}:{runner_tag}"),
            redis=qualified(values["redis"]["deploy"]["image"]),
            minio=qualified(values["minio"]["deploy"]["image"]),
        )

    @property
    def api_dev(self) -> str:
        return self.api.rsplit(":", 1)[0] + ":dev"
