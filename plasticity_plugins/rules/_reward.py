"""Reward delivery for reward-modulated rules: the pairs waiting for a reward, and its checks.

A reward-modulated rule keeps, per pair, what the reward will multiply (in the pair's state) and
registers the pair in its :class:`RewardInbox` at every forward call. ``rule.reward(r)`` then
writes the update of every registered pair and empties the inbox.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import InputError, StateError
from .base import PairView, RuleState, UpdateSink

Waiting = tuple[str, nn.Module, RuleState, UpdateSink]


class RewardInbox:
    """The pairs a rule saw since its last reward (mutable; one per rule object)."""

    def __init__(self) -> None:
        self._waiting: dict[int, Waiting] = {}

    def register(self, view: PairView, state: RuleState) -> None:
        """Note that ``state`` (a pair's) holds an update waiting for the next reward."""
        self._waiting[id(state)] = (view.name, view.synapse, state, view.sink)

    def deliver(
        self,
        rule: str,
        reward: Tensor | float,
        apply: Callable[[nn.Module, RuleState, UpdateSink, Tensor], None],
        pending_key: str,
        shape_of: Callable[[RuleState], tuple[int, int]],
    ) -> None:
        """Check ``reward`` against every waiting pair, then ``apply`` it to each and forget them.

        Args:
            rule: the rule's name, for messages.
            reward: the reward (see :func:`check_reward`).
            apply: ``apply(synapse, state, sink, reward [T, B])`` writes one pair's update.
            pending_key: a state entry present while the pair's update waits (after
                ``handle.reset()`` it is gone and the pair is skipped).
            shape_of: ``(T, B)`` of a pair's waiting update.
        """
        waiting = [w for w in self._waiting.values() if pending_key in w[2]]
        if not waiting:
            raise StateError(
                f"{rule}.reward(): no forward call of an attached pair since the last reward "
                "(or handle.reset()); run the model first. While the handle is paused nothing "
                "is recorded, so do not deliver rewards during evaluation"
            )
        checked = [
            (w, check_reward(reward, *shape_of(w[2]), f"{rule}.reward() for {w[0]}"))
            for w in waiting
        ]
        for (_, synapse, state, sink), r in checked:
            apply(synapse, state, sink, r)
        self._waiting.clear()


def check_reward(reward: Tensor | float, steps: int, batch: int, where: str) -> Tensor:
    """A validated ``[T, B]`` reward: a number (every sample and step), ``[B]`` (every step of
    the call) or ``[T, B]``; detached, finite.

    Raises:
        InputError: a tensor that requires grad, of another shape, or with NaN / inf.
    """
    if isinstance(reward, bool) or not isinstance(reward, (int, float, Tensor)):
        raise InputError(f"{where}: reward must be a float or a Tensor, got {type(reward)}")
    if not isinstance(reward, Tensor):
        if not math.isfinite(reward):
            raise InputError(f"{where}: reward must be finite, got {reward}")
        return torch.full((steps, batch), float(reward))
    if reward.requires_grad:
        raise InputError(
            f"{where}: the reward requires grad; pass reward.detach() (a reward is a "
            "learning signal, not part of the autograd graph)"
        )
    if reward.dim() == 0:
        out = reward.expand(steps, batch)
    elif reward.shape == (batch,):
        out = reward.expand(steps, batch)
    elif reward.shape == (steps, batch):
        out = reward
    else:
        raise InputError(
            f"{where}: reward of shape {tuple(reward.shape)}; expected [B] = [{batch}] (one "
            f"reward per sample, applied along the batch axis) or [T, B] = [{steps}, {batch}] "
            "(per step of the last forward call)"
        )
    if not bool(torch.isfinite(out).all()):
        raise InputError(f"{where}: reward contains NaN or inf")
    return out
