"""Natural policy gradient: TRPO's direction and step length without the line search."""

from __future__ import annotations

import dataclasses

from trpo_bench.algos import trpo
from trpo_bench.algos.common import PolicyBatch, PolicyStats
from trpo_bench.config import TrustRegionSettings
from trpo_bench.policies import Policy


def update(policy: Policy, batch: PolicyBatch, settings: TrustRegionSettings) -> PolicyStats:
    return trpo.update(policy, batch, dataclasses.replace(settings, line_search=False))
