"""A set of interventions on a frozen model: which layers, which position groups, and the hooks.

`Reft` owns the intervention modules (one per layer and position group). `reft.attached(model,
positions, mask)` registers forward hooks on the chosen blocks' outputs (the residual stream) and
always removes them; `reft.generate(...)` edits the prompt on the prefill pass only.
"""
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .interventions import build_intervention, count_parameters
from .positions import PositionSpec

# Where the list of transformer blocks lives, tried in order (Llama/Mistral/Qwen/Gemma, GPT-2,
# GPT-NeoX, OPT, BERT/RoBERTa classifiers and bare encoders, multimodal wrappers).
LAYER_PATHS = ("model.layers", "model.language_model.layers", "language_model.model.layers", "transformer.h",
               "gpt_neox.layers", "model.decoder.layers", "roberta.encoder.layer", "bert.encoder.layer",
               "encoder.layer", "layers", "h")


def find_layers(model: nn.Module) -> nn.ModuleList:
    for path in LAYER_PATHS:
        obj = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(f"unsupported model {type(model).__name__}: no block list at any of {', '.join(LAYER_PATHS)}")


def parse_layers(layers: str | int | list, num_layers: int) -> list[int]:
    """'all', an int, a list, 'a;b;c', 'a,b' or a range 'a-b' / 'a:b' (inclusive) → sorted unique layer ids."""
    text = str(layers).strip() if not isinstance(layers, (list, tuple)) else None
    try:
        if text == "all":
            ids = list(range(num_layers))
        elif text is not None and ("-" in text[1:] or ":" in text):
            lo, hi = (int(x) for x in text.replace(":", "-").split("-"))
            ids = list(range(lo, hi + 1))
        elif text is not None:
            ids = [int(x) for x in text.strip("[]").replace(";", ",").split(",") if x.strip()]
        else:
            ids = [int(x) for x in layers]
    except ValueError:
        raise ValueError(f"layers {layers!r} is malformed; valid: all, a list like [2,10,18], or a range like 0-15")
    if not ids:
        raise ValueError(f"layers {layers!r} selects no layer; valid: all, a list like [2,10,18], or a range like 0-15")
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"layers {layers!r} names layer {twice[0]} more than once; valid: each layer at most once")
    bad = [i for i in ids if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"layers {layers!r} out of range for a {num_layers}-layer model; valid: 0..{num_layers - 1} or all")
    return sorted(set(ids))


@dataclass
class ReftSpec:
    """Everything needed to rebuild the interventions without the original config (saved as reft.json)."""
    intervention: str
    rank: int
    layers: list[int]
    positions: PositionSpec   # a string such as "f7+l7" is parsed on construction
    share_weights: bool
    hidden_size: int
    dtype: str = "float32"
    dropout: float = 0.0
    act_fn: str | None = None
    base_model: str = ""
    dropout_whole_output: bool = False   # compat=pyreft: dropout on h+Δ, not on Δ
    pyreft_clipping: bool = False        # compat=pyreft: ⌊n/2⌋ clipping for both position groups
    sink_token: bool = False             # compat=pyreft: a masked pad token prepended to every sequence

    def __post_init__(self):
        if not isinstance(self.positions, PositionSpec):
            self.positions = PositionSpec.parse(self.positions)

    def to_dict(self) -> dict:
        return {**asdict(self), "positions": str(self.positions)}


class Reft(nn.Module):
    def __init__(self, spec: ReftSpec):
        super().__init__()
        self.spec = spec
        self.groups = spec.positions.groups(spec.share_weights)
        kw = dict(dropout=spec.dropout, act_fn=spec.act_fn, dtype=getattr(torch, spec.dtype),
                  dropout_whole_output=spec.dropout_whole_output)
        self.interventions = nn.ModuleDict({
            self.key(layer, group): build_intervention(spec.intervention, spec.hidden_size, spec.rank, **kw)
            for group in self.groups for layer in spec.layers})
        self._positions: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def key(layer: int, group: str) -> str:
        return f"layer{layer}" if group == "all" else f"layer{layer}_{group}"

    def num_parameters(self) -> int:
        return count_parameters(self)

    def _hook(self, layer: int):
        modules = [(g, self.interventions[self.key(layer, name)]) for g, name in enumerate(self.groups)]

        def hook(module, args, output):
            if self._positions is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            positions, mask = (t.to(hidden.device) for t in self._positions)
            if positions.shape[0] != hidden.shape[0]:  # beam search expands each row num_beams times
                repeat = hidden.shape[0] // positions.shape[0]
                positions, mask = positions.repeat_interleave(repeat, 0), mask.repeat_interleave(repeat, 0)
            for g, intervention in modules:
                hidden = edit_positions(hidden, positions[:, g], mask[:, g], intervention)
            return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden
        return hook

    @contextmanager
    def attached(self, model: nn.Module, positions: torch.Tensor, mask: torch.Tensor, prefill_only: bool = False):
        """Edit `positions` ([B, G, P], valid where `mask`) of the chosen blocks' outputs while inside."""
        layers = find_layers(model)
        if max(self.spec.layers) >= len(layers):
            raise ValueError(f"layers {self.spec.layers} out of range for a {len(layers)}-layer model")
        for i in self.spec.layers:  # with a device map, each block's interventions live on that block's device
            block_device = next(layers[i].parameters()).device
            for group in self.groups:
                self.interventions[self.key(i, group)].to(block_device)
        self._positions = (positions, mask)
        handles = [layers[i].register_forward_hook(self._hook(i)) for i in self.spec.layers]
        if prefill_only:  # the first forward call is the prefill over the prompt; later calls decode
            handles.append(model.register_forward_hook(lambda *a: setattr(self, "_positions", None)))
        try:
            yield model
        finally:
            for h in handles:
                h.remove()
            self._positions = None

    @torch.no_grad()
    def generate(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 positions: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """HF generate with the prompt edited on the prefill only; generated tokens are never edited."""
        with self.attached(model, positions, mask, prefill_only=True):
            return model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def edit_positions(hidden: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                   intervention: nn.Module) -> torch.Tensor:
    """hidden with hidden[b, positions[b, j]] replaced by Φ(that vector) wherever mask[b, j].

    One gather and one scatter. Unused slots are pointed at the row's first used slot and write its
    (detached) value again, so duplicates agree and gradients are not double-counted."""
    first = mask.to(torch.uint8).argmax(1, keepdim=True)               # first used slot per row
    positions = torch.where(mask, positions, positions.gather(1, first))
    index = positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
    selected = hidden.gather(1, index)
    edited = intervention(selected)
    duplicate = edited.gather(1, first.unsqueeze(-1).expand(-1, -1, edited.shape[-1])).detach()
    used = mask.any(1, keepdim=True).unsqueeze(-1)                      # rows with no used slot stay as they are
    edited = torch.where(mask.unsqueeze(-1), edited, torch.where(used, duplicate, selected))
    return hidden.scatter(1, index, edited)
