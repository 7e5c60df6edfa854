"""Exponential moving average (EMA) of a network's weights, with warm-up.

After every optimizer step the shadow copy moves toward the live weights:

    θ_ema ← β_t θ_ema + (1 − β_t) θ,      β_t = min(β, (1 + t) / (10 + t))

where ``t`` is the number of updates so far and ``β`` the configured decay. The warm-up factor
``(1 + t)/(10 + t)`` keeps the early average from being dominated by the random initialization
(β_0 = 0.1, β_90 = 0.91, β_990 = 0.991 …). Buffers (running statistics, fixed tables) are copied,
not averaged. The shadow lives on the network's device in float32; it is what validation and the
exported bundle use.

Example::

    ema = EMA(net, decay=0.999)
    ...; optimizer.step(); ema.update(net)
    with ema.averaged(net):          # net temporarily holds the EMA weights
        metrics = evaluate(net)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def ema_decay_at(update: int, decay: float, warmup: bool = True) -> float:
    """The decay β_t used for update number ``update`` (0-based)."""
    if not warmup:
        return decay
    return min(decay, (1.0 + update) / (10.0 + update))


class EMA:
    """Shadow weights of ``net``: float32 copies of every parameter and buffer, keyed as ``net.state_dict()``."""

    def __init__(self, net: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self._param_names = {name for name, _ in net.named_parameters()}
        self.shadow: dict[str, torch.Tensor] = {
            name: t.detach().clone().float() if t.is_floating_point() else t.detach().clone()
            for name, t in net.state_dict().items()
        }

    @torch.no_grad()
    def update(self, net: nn.Module) -> float:
        """One EMA step toward ``net``'s current weights; returns the β used."""
        beta = ema_decay_at(self.num_updates, self.decay, self.warmup)
        averaged, targets = [], []
        for name, t in net.state_dict().items():
            shadow = self.shadow[name]
            if name in self._param_names and t.is_floating_point():
                averaged.append(shadow)
                targets.append(t.detach().to(shadow.dtype))
            else:
                shadow.copy_(t)
        if averaged:
            torch._foreach_lerp_(averaged, targets, 1.0 - beta)
        self.num_updates += 1
        return beta

    @torch.no_grad()
    def reset_to(self, net: nn.Module, prefix: str = "") -> None:
        """Set the shadow of every entry whose name starts with ``prefix`` to ``net``'s current value."""
        for name, t in net.state_dict().items():
            if name.startswith(prefix):
                self.shadow[name].copy_(t)

    @torch.no_grad()
    def copy_to(self, net: nn.Module, prefix: str = "") -> None:
        """Write the shadow (entries starting with ``prefix``; all by default) into ``net``."""
        state = net.state_dict()
        for name, value in self.shadow.items():
            if name.startswith(prefix):
                state[name].copy_(value)

    def averaged_state(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """A detached copy of the shadow weights (optionally cast), keyed as ``net.state_dict()``."""
        return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().clone()
                for k, v in self.shadow.items()}

    @contextmanager
    def averaged(self, net: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``net``; the live weights come back afterwards."""
        live = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.copy_to(net)
        try:
            yield net
        finally:
            with torch.no_grad():
                state = net.state_dict()
                for k, v in live.items():
                    state[k].copy_(v)

    def to(self, device: torch.device | str) -> EMA:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {k: v.detach().clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved state. Every parameter must be in it; a buffer it lacks (one added to the network
        after the state was saved, e.g. the downscaler's ``residual_scale``) keeps its current value, as the
        network's own loading gives it."""
        missing = (set(self.shadow) - set(state["shadow"])) & self._param_names
        unexpected = set(state["shadow"]) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(f"EMA state does not fit the network: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
        self.num_updates = int(state["num_updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
