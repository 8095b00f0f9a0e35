"""What trains on the frozen model: ReFT interventions (method=reft) or peft adapters (lora, dora, vera, ia3).

A method attaches its parameters to the frozen model, hands them to the optimiser, says how a batch runs with
it active, saves and reloads itself (safetensors plus a JSON description) and counts its parameters. The loop,
the evaluation and the tables use only this interface; adding a method is one class and one line in METHODS.
"""
import importlib
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..runio import atomic_write, read_json, write_json

HEAD = "head.safetensors"
METHODS = {"reft": "reft:ReftMethod", "lora": "peft:PeftMethod", "dora": "peft:PeftMethod",
           "vera": "peft:PeftMethod", "ia3": "peft:PeftMethod"}


class Method:
    """Subclasses set `files` (description JSON, weights) and implement the methods below."""
    name = "base"
    spec = None  # ReFT: the interventions' spec, from which the collator computes positions
    files: tuple[str, str] = ("method.json", "method.safetensors")
    pending: dict | None = None  # weights read by load_method, applied by attach

    def attach(self, model: torch.nn.Module) -> None:
        """Put the trainable parameters on the frozen model (or beside it); called once, after the model loads."""
        raise NotImplementedError

    def named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        raise NotImplementedError

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups; a method may keep some parameters out of weight decay."""
        return [{"params": [p for _, p in self.named_parameters()], "weight_decay": weight_decay}]

    def active(self, model: torch.nn.Module, batch: dict, generating: bool = False):
        """A context inside which `model` runs with the method on (`generating`: prefill, then decoding)."""
        return nullcontext()

    def train(self, mode: bool = True) -> None:
        """Dropout on (training) or off (evaluation)."""

    def description(self) -> dict:
        """What rebuilds the method without the run's config (its JSON file)."""
        raise NotImplementedError

    @classmethod
    def from_description(cls, data: dict) -> "Method":
        raise NotImplementedError

    def num_parameters(self) -> int:
        return sum(p.numel() for _, p in self.named_parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        if set(params) != set(state):
            raise ValueError(f"saved tensors do not match the method: mismatched {sorted(set(params) ^ set(state))[:3]}")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name])

    def save(self, run_dir: Path, head: dict | None = None) -> None:
        """The weights as safetensors and the description as JSON (and a classifier's trained head, if any)."""
        spec, weights = (Path(run_dir) / f for f in self.files)
        save_tensors(self.state_dict(), weights)
        if head:
            save_tensors(head, Path(run_dir) / HEAD)
        write_json(spec, {"method": self.name, **self.description(), "num_parameters": self.num_parameters(),
                          "head_parameters": sum(p.numel() for p in (head or {}).values())})


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def build_method(run, model_config, kind: str) -> Method:
    """The run's method, its parameters not yet created where they live on the model (peft adapters)."""
    return method_class(run.method.name).from_run(run, model_config, kind)


def load_method(run_dir: Path) -> Method:
    """A saved method from its run folder (safetensors only, no pickle); its weights apply when it is attached."""
    run_dir = Path(run_dir)
    found = [p for p in (run_dir / "reft.json", run_dir / "adapter.json") if p.exists()]
    if not found:
        raise FileNotFoundError(f"{run_dir} holds no saved method (reft.json or adapter.json); "
                                "is it a finished reftrun run folder?")
    data = read_json(found[0])
    if not isinstance(data, dict):
        raise ValueError(f"{found[0]} is malformed; it does not describe a method")
    cls = method_class(data.pop("method", "reft"))  # the reft.json of older runs names no method
    weights = run_dir / cls.files[1]
    if not weights.exists():
        raise FileNotFoundError(f"{weights} not found; is {run_dir} a finished reftrun run folder?")
    for key in ("num_parameters", "head_parameters"):
        data.pop(key, None)
    try:
        method = cls.from_description(data)
    except (AttributeError, TypeError, KeyError) as e:
        raise ValueError(f"{found[0]} is malformed ({e}); it does not describe a method")
    method.pending = load_tensors(weights)
    return method


def load_head(run_dir: Path, model) -> None:
    """Load a saved classifier head into `model` (safetensors only)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in load_tensors(Path(run_dir) / HEAD).items():
            params[name].copy_(tensor)


def save_tensors(tensors: dict, path: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "reftrun"}))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is corrupted or truncated ({e})")


def dry_run(run, num_labels: int | None = None, kind: str = "generate") -> dict:
    """Parameter counts without weights: the model is built on the meta device from its config. Also what
    checks a method against the model (a ReFT layer out of range, a peft target module it lacks)."""
    from ..models import base_parameters, meta_model, model_config
    config = model_config(run.model.name_or_path, run.model.trust_remote_code, run.model.architecture)
    method = build_method(run, config, kind)
    method.attach(meta_model(config, num_labels, run.model.trust_remote_code))
    return {"num_parameters": method.num_parameters(),
            "base_parameters": base_parameters(config, num_labels, run.model.trust_remote_code)}


def report_parameters(n_params: int, n_base: int) -> None:
    print(f"[reftrun] trainable parameters: {n_params:,} ({100 * n_params / n_base:.4f}% of the base model's "
          f"{n_base:,}; {100 * n_params / (n_base + n_params):.4f}% of base + trainable)")
