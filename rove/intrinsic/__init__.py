"""Plug-in intrinsic-reward modules (see ``base`` for the protocol and ``registry`` for the names)."""

from rove.intrinsic.base import IntrinsicModule, seeded
from rove.intrinsic.registry import get, make, names, register
from rove.intrinsic.types import Rollout, Step, Transitions

__all__ = ["IntrinsicModule", "Rollout", "Step", "Transitions", "get", "make", "names", "register", "seeded"]
