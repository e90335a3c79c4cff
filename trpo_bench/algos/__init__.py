"""Policy updates. Each is a plain function ``update(policy, batch, settings) -> PolicyStats``."""

from trpo_bench.algos.common import PolicyBatch, PolicyStats
from trpo_bench.algos import npg, pg, trpo

__all__ = ["PolicyBatch", "PolicyStats", "npg", "pg", "trpo"]
