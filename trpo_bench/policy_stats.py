"""What a policy update reports (:class:`PolicyStats`), and the metric columns it fills.

Kept apart from the updates themselves so that the run store, and the commands that only
check or read runs (``grid``'s launcher, ``export``), can name the columns without importing
torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class PolicyStats:
    """Diagnostics of one policy update; a field left None does not apply to the algorithm.

    Names follow the metric table of docs/architecture.md (``policy/<field>``).
    """

    kl: float | None = None
    kl_max: float | None = None
    entropy: float | None = None
    surrogate_expected: float | None = None
    surrogate_actual: float | None = None
    improvement_ratio: float | None = None
    step_size: float | None = None
    step_norm: float | None = None
    step_fraction: float | None = None
    backtracks: float | None = None
    accepted: float | None = None
    grad_norm: float | None = None
    natural_grad_norm: float | None = None
    cg_residual: float | None = None
    cg_iters: float | None = None
    sHs: float | None = None

    def metrics(self) -> dict[str, float]:
        return {f"policy/{f.name}": getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


POLICY_METRICS = [f"policy/{f.name}" for f in fields(PolicyStats)]
