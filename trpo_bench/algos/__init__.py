"""Policy updates. Each is a plain function ``update(policy, batch, settings) -> PolicyStats``."""

from trpo_bench.algos import npg, pg, trpo
from trpo_bench.algos.common import PolicyBatch, PolicyStats

__all__ = ["PolicyBatch", "PolicyStats", "npg", "pg", "trpo"]
