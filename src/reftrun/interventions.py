"""Intervention modules Φ(h) and their registry.

Each intervention is a small nn.Module taking the selected hidden states h (…, d) and returning the
edited states in h's dtype; parameters live in `dtype` (fp32 by default, whatever the model runs in).
Add one with a class and `@register("name")` (see docs in README). Math: docs/reference/pyreft_behaviour.md §1.3.
"""
from typing import Callable

import torch
from torch import nn

from .orthogonal import OrthonormalRows

INTERVENTIONS: dict[str, type["Intervention"]] = {}


def register(name: str) -> Callable[[type["Intervention"]], type["Intervention"]]:
    def add(cls: type["Intervention"]) -> type["Intervention"]:
        INTERVENTIONS[name] = cls
        return cls
    return add


def activation(name: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    if name in (None, "", "linear", "identity"):
        return lambda x: x
    acts = {"relu": torch.relu, "gelu": nn.functional.gelu, "tanh": torch.tanh, "silu": nn.functional.silu}
    if name not in acts:
        raise ValueError(f"unknown act_fn {name!r}; valid: linear, {', '.join(acts)}")
    return acts[name]


class Intervention(nn.Module):
    """Base: subclasses implement `edit(h) -> Δ` in the parameter dtype; forward returns h + dropout(Δ).

    `dropout_whole_output=True` reproduces pyreft, which drops out the whole edited vector h+Δ."""

    uses_dropout = True

    def __init__(self, hidden_size: int, rank: int, dropout: float = 0.0, act_fn: str | None = None,
                 dtype: torch.dtype = torch.float32, dropout_whole_output: bool = False):
        super().__init__()
        self.hidden_size, self.rank, self.dtype = hidden_size, rank, dtype
        self.act = activation(act_fn)
        self.dropout = nn.Dropout(dropout if self.uses_dropout else 0.0)
        self.dropout_whole_output = dropout_whole_output

    def linear(self, bias: bool = True) -> nn.Linear:
        return nn.Linear(self.hidden_size, self.rank, bias=bias, dtype=self.dtype)

    def edit(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h.to(self.dtype)
        if self.dropout_whole_output:
            return self.dropout(x + self.edit(x)).to(h.dtype)
        return (x + self.dropout(self.edit(x))).to(h.dtype)


@register("loreft")
class LoReFT(Intervention):
    """Φ(h) = h + Rᵀ(σ(Wh + b) − Rh), R with orthonormal rows (paper eq. 2)."""

    def __init__(self, hidden_size: int, rank: int, **kw):
        super().__init__(hidden_size, rank, **kw)
        self.rotation = OrthonormalRows(hidden_size, rank, self.dtype)
        self.proj = self.linear()

    def edit(self, h):
        rot = self.rotation()  # Rᵀ, d×r
        return (self.act(self.proj(h)) - h @ rot) @ rot.T


@register("direft")
class DiReFT(Intervention):
    """Φ(h) = h + W2ᵀσ(W1h + b): the paper's DiReFT (eq. 3), no orthogonality, no difference (pyreft: Nodireft)."""

    def __init__(self, hidden_size: int, rank: int, **kw):
        super().__init__(hidden_size, rank, **kw)
        self.proj = self.linear()
        self.up = self.linear(bias=False)  # W2, r×d

    def edit(self, h):
        return self.act(self.proj(h)) @ self.up.weight


@register("noreft")
class NoReFT(Intervention):
    """Φ(h) = h + W2ᵀ(σ(W1h + b) − W2h): LoReFT with a free W2 instead of orthonormal R (Table 17)."""

    def __init__(self, hidden_size: int, rank: int, **kw):
        super().__init__(hidden_size, rank, **kw)
        self.proj = self.linear()
        self.up = self.linear(bias=False)

    def edit(self, h):
        return (self.act(self.proj(h)) - self.up(h)) @ self.up.weight


@register("consreft")
class ConsReFT(Intervention):
    """Φ(h) = h + Rᵀ(b − Rh): a constant target inside a learned orthonormal subspace (Table 17); no dropout."""

    uses_dropout = False

    def __init__(self, hidden_size: int, rank: int, **kw):
        super().__init__(hidden_size, rank, **kw)
        self.rotation = OrthonormalRows(hidden_size, rank, self.dtype)
        self.bias = nn.Parameter(torch.rand(rank, dtype=self.dtype))  # U[0,1) as pyreft

    def edit(self, h):
        rot = self.rotation()
        return (self.bias - h @ rot) @ rot.T


@register("lobireft")
class LoBiReFT(Intervention):
    """Φ(h) = h + Rᵀb: a learned steering vector in a learned subspace (Table 17)."""

    def __init__(self, hidden_size: int, rank: int, **kw):
        super().__init__(hidden_size, rank, **kw)
        self.rotation = OrthonormalRows(hidden_size, rank, self.dtype)
        self.bias = nn.Parameter(torch.rand(rank, dtype=self.dtype))

    def edit(self, h):
        return (self.bias @ self.rotation().T).expand_as(h)


@register("loreft_nodiff")
class LoReFTNoDiff(Intervention):
    """Φ(h) = h + Rᵀσ(Wh + b), R orthonormal: Table 17's ablation, which pyreft calls "DireftIntervention"."""

    def __init__(self, hidden_size: int, rank: int, **kw):
        super().__init__(hidden_size, rank, **kw)
        self.rotation = OrthonormalRows(hidden_size, rank, self.dtype)
        self.proj = self.linear()

    def edit(self, h):
        return self.act(self.proj(h)) @ self.rotation().T


def build_intervention(kind: str, hidden_size: int, rank: int, **kw) -> Intervention:
    if kind not in INTERVENTIONS:
        raise ValueError(f"unknown intervention {kind!r}; valid: {', '.join(sorted(INTERVENTIONS))}")
    return INTERVENTIONS[kind](hidden_size, rank, **kw)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
