"""Rove intrinsic modules inside Stable-Baselines3 PPO and A2C (rewards enter before GAE).

Usage::

    from stable_baselines3 import PPO
    from rove.agents.sb3 import IntrinsicRewardCallback, rove_policy_kwargs

    model = PPO("MultiInputPolicy", "Rove/MiniGrid-DoorKey-8x8-v0", policy_kwargs=rove_policy_kwargs())
    model.learn(100_000, callback=IntrinsicRewardCallback("rnd", int_coef=0.01))
"""

from rove.agents.sb3.adapter import IntrinsicRewardCallback
from rove.agents.sb3.buffers import (
    IntrinsicBufferMixin,
    IntrinsicDictRolloutBuffer,
    IntrinsicRolloutBuffer,
    intrinsic_buffer_class,
)
from rove.agents.sb3.monitor import RoveMonitor, make_vec_env
from rove.agents.sb3.policies import RoveFeaturesExtractor, rove_policy_kwargs
from rove.agents.sb3.recorder import TransitionRecorder

__all__ = [
    "IntrinsicBufferMixin",
    "IntrinsicDictRolloutBuffer",
    "IntrinsicRewardCallback",
    "IntrinsicRolloutBuffer",
    "RoveFeaturesExtractor",
    "RoveMonitor",
    "TransitionRecorder",
    "intrinsic_buffer_class",
    "make_vec_env",
    "rove_policy_kwargs",
]
