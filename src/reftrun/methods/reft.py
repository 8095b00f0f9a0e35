"""method=reft: interventions on the residual stream of chosen blocks at chosen prompt positions (reftrun.reft)."""
import torch

from ..errors import ConfigError
from ..reft import Reft, ReftSpec, find_layers, parse_layers
from . import Method


def build_spec(run, model_config, kind: str = "generate") -> ReftSpec:
    config = getattr(model_config, "text_config", model_config)
    hidden_size, num_layers = config.hidden_size, config.num_hidden_layers
    try:
        layers = parse_layers(run.layers, num_layers)
    except ValueError as e:
        raise ConfigError(str(e))
    if run.rank > hidden_size:
        raise ConfigError(f"rank {run.rank} exceeds the model's hidden size {hidden_size}; valid: 1..{hidden_size}")
    pyreft = run.compat == "pyreft"
    return ReftSpec(intervention=run.intervention.type, rank=run.rank, layers=layers, positions=run.positions,
                    share_weights=run.share_weights, hidden_size=hidden_size, dtype=run.intervention.dtype,
                    dropout=run.intervention.dropout, act_fn=run.intervention.act_fn,
                    base_model=run.model.name_or_path, dropout_whole_output=pyreft, pyreft_clipping=pyreft,
                    sink_token=pyreft and kind != "classify")  # pyreft's GLUE data has no leading sink: the head reads token 0


class ReftMethod(Method):
    name = "reft"
    files = ("reft.json", "interventions.safetensors")

    def __init__(self, spec: ReftSpec, decay: bool = True):
        self.spec, self.decay = spec, decay
        self.reft = Reft(spec)

    @classmethod
    def from_run(cls, run, model_config, kind: str) -> "ReftMethod":
        return cls(build_spec(run, model_config, kind), decay=run.compat != "pyreft")  # pyreft never decays them

    @classmethod
    def from_description(cls, data: dict) -> "ReftMethod":
        data.pop("extra", None)  # an unused field in the reft.json of older runs
        return cls(ReftSpec(**data))

    def description(self) -> dict:
        return self.spec.to_dict()

    def attach(self, model: torch.nn.Module) -> None:
        blocks = len(find_layers(model))  # an unsupported architecture fails here, naming the paths it tried
        if max(self.spec.layers) >= blocks:
            raise ValueError(f"layers {self.spec.layers} out of range for a {blocks}-layer model")
        self.reft.to(next(model.parameters()).device)
        if self.pending is not None:
            self.load_state_dict(self.pending)
            self.pending = None

    def named_parameters(self):
        return list(self.reft.named_parameters())

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        decay, no_decay = [], []
        for name, p in self.reft.named_parameters():
            (no_decay if "rotation" in name else decay).append(p)  # R's chart coordinates are never decayed
        return [{"params": decay, "weight_decay": weight_decay if self.decay else 0.0},
                {"params": no_decay, "weight_decay": 0.0}]

    def active(self, model, batch: dict, generating: bool = False):
        return self.reft.attached(model, batch["positions"], batch["position_mask"], prefill_only=generating)

    def train(self, mode: bool = True) -> None:
        self.reft.train(mode)

    def num_parameters(self) -> int:
        return self.reft.num_parameters()

    def state_dict(self) -> dict:
        return self.reft.state_dict()

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.reft.state_dict()) ^ set(state)
        if missing:
            raise ValueError(f"saved interventions do not match reft.json: mismatched tensors {sorted(missing)[:3]}")
        self.reft.load_state_dict(state)
