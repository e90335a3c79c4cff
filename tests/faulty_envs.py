"""Tasks that go wrong after a number of steps, for the fault tests (``faulty_envs:NanObs-v0``).

Each is CartPole-v1 until its instance has taken ``BAD_AFTER`` steps; from then on it
returns NaN or infinite observations, a NaN reward, or raises.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv

BAD_AFTER = 300  # steps of one env instance: inside update 3 at 128 steps per env and update


class _Faulty(CartPoleEnv):
    fault = "nan-obs"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps_taken = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self.steps_taken += 1
        if self.steps_taken > BAD_AFTER:
            if self.fault == "nan-obs":
                obs = np.full_like(obs, np.nan)
            elif self.fault == "inf-obs":
                obs = np.full_like(obs, np.inf)
            elif self.fault == "nan-reward":
                reward = math.nan
            elif self.fault == "crash":
                raise RuntimeError("the simulator lost its connection")
        return obs, reward, terminated, truncated, info


for _name, _fault in (("NanObs-v0", "nan-obs"), ("InfObs-v0", "inf-obs"), ("NanReward-v0", "nan-reward"),
                      ("Crashing-v0", "crash")):
    if _name not in gym.registry:
        gym.register(_name, entry_point=type(_name.split("-")[0], (_Faulty,), {"fault": _fault}),
                     max_episode_steps=500)
