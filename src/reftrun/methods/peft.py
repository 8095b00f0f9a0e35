"""method=lora|dora|vera|ia3: adapters from the peft library on the frozen model's linear layers.

peft injects the adapter layers into the model in place, so the model keeps its own forward and generate:
training, left-padded batched generation, decoding and scoring are the same code as for ReFT.
"""
import torch

from ..errors import ConfigError
from ..reft import parse_layers
from . import Method

SETTINGS = ("rank", "alpha", "dropout", "target_modules", "feedforward_modules", "layers", "base_model")


class PeftMethod(Method):
    files = ("adapter.json", "adapter.safetensors")

    def __init__(self, name: str, rank: int, alpha: float | None, dropout: float, target_modules: list[str],
                 feedforward_modules: list[str] | None = None, layers: list[int] | None = None, base_model: str = ""):
        self.name, self.rank, self.alpha, self.dropout = name, rank, alpha, dropout
        self.target_modules, self.feedforward_modules = list(target_modules), list(feedforward_modules or [])
        self.layers, self.base_model = layers, base_model
        self.params: dict[str, torch.nn.Parameter] = {}

    @classmethod
    def from_run(cls, run, model_config, kind: str) -> "PeftMethod":
        m = run.method
        config = getattr(model_config, "text_config", model_config)
        try:
            layers = None if str(run.layers) == "all" else parse_layers(run.layers, config.num_hidden_layers)
        except ValueError as e:
            raise ConfigError(str(e))
        if layers is not None and m.name == "ia3":
            raise ConfigError(f"layers {run.layers!r}: ia3 adapts every block (peft's IA3 has no layer selection); valid: all")
        return cls(m.name, m.rank, m.alpha, m.dropout, m.target_modules, m.feedforward_modules, layers,
                   run.model.name_or_path)

    @classmethod
    def from_description(cls, data: dict) -> "PeftMethod":
        return cls(data["name"], **{k: data[k] for k in SETTINGS})

    def description(self) -> dict:
        return {"name": self.name, **{k: getattr(self, k) for k in SETTINGS}}

    def peft_config(self):
        import peft
        common = dict(target_modules=self.target_modules)
        if self.layers is not None:
            common["layers_to_transform"] = self.layers
        if self.name in ("lora", "dora"):
            return peft.LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, bias="none",
                                   use_dora=self.name == "dora", **common)
        if self.name == "vera":
            return peft.VeraConfig(r=self.rank, vera_dropout=self.dropout, bias="none", **common)
        return peft.IA3Config(feedforward_modules=self.feedforward_modules, **common)

    def attach(self, model: torch.nn.Module) -> None:
        """Check the target modules against the model (a meta-device model in dry runs), then inject."""
        import peft
        names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        bad = [t for t in self.target_modules if t not in names]
        if bad:
            raise ConfigError(f"method.target_modules: {bad[0]!r} is not a linear layer of {self.base_model or 'the model'}; "
                              f"valid: {', '.join(sorted(names))}")
        before = {id(p) for p in model.parameters() if p.requires_grad}  # a classifier's head, if already trainable
        peft.get_peft_model(model, self.peft_config())  # injects in place; `model` keeps its own forward
        model.train(model.training)  # injected layers start in training mode: they follow the model's mode
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in before}
        for p in model.parameters():  # get_peft_model froze everything else; a head stays as it was
            if id(p) in before:
                p.requires_grad_(True)
        if self.pending is not None:
            self.load_state_dict(self.pending)
            self.pending = None

    def named_parameters(self):
        return list(self.params.items())
