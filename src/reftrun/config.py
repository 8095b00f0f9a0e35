"""Typed run configuration, validated from the composed Hydra config before any model loads.

`validate(cfg)` turns the DictConfig into dataclasses and raises ConfigError with one line naming the
bad value and the valid choices. Defaults live in conf/*.yaml; each field is documented here.
"""
import importlib
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass, fields

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError
from .positions import PositionSpec
from .tasks import TASK_NAMES, task_class

DTYPES = ("auto", "float32", "bfloat16", "float16")
DECODING_KEYS = {"num_beams", "do_sample", "temperature", "top_p", "top_k", "no_repeat_ngram_size",
                 "repetition_penalty", "max_length", "max_new_tokens", "early_stopping"}


def slug(value) -> str:
    """A value as a safe folder-name fragment: 'f7+l7' stays, '2;10;18' → '2_10_18'."""
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple, ListConfig)) else str(value)
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", text.replace(";", ",").replace(",", "_")).strip("-")


OmegaConf.register_new_resolver("slug", slug, replace=True)
OmegaConf.register_new_resolver("tied", lambda v: "tied" if str(v).lower() == "true" else "untied", replace=True)


# The schema of a run's settings. Their values and what each one means live in conf/ (train.yaml and its groups):
# every key is there, so no field needs a default here.


@dataclass
class ModelConfig:
    name_or_path: str
    short_name: str
    dtype: str
    max_length: int
    trust_remote_code: bool
    use_fast_tokenizer: bool
    device_map: str | None
    gradient_checkpointing: bool
    architecture: dict | None


@dataclass
class InterventionConfig:
    type: str
    dropout: float
    act_fn: str | None
    dtype: str


@dataclass
class MethodConfig:
    name: str
    run_name: str
    rank: int | None
    alpha: float | None
    dropout: float | None
    target_modules: list[str] | None
    feedforward_modules: list[str] | None


@dataclass
class TaskConfig:
    name: str
    data_dir: str
    eval_sets: list[str] | None
    max_train_examples: int | None
    max_new_tokens: int | None
    split_seed: int
    options: dict


@dataclass
class OptimConfig:
    lr: float
    weight_decay: float
    warmup_ratio: float
    batch_size: int
    grad_accum: int
    epochs: float
    max_steps: int
    max_grad_norm: float
    group_by_length: bool


@dataclass
class EvalConfig:
    before: bool
    batch_size: int
    max_examples: int | None
    sets: list[str] | None


@dataclass
class RunConfig:
    model: ModelConfig
    method: MethodConfig
    intervention: InterventionConfig
    task: TaskConfig
    optim: OptimConfig
    eval: EvalConfig
    rank: int
    layers: str | int | list
    positions: str
    share_weights: bool
    seed: int
    compat: str
    device: str
    autocast: str | None
    decoding: dict
    logger: str
    wandb: dict
    dry_run: bool
    log_every: int
    checkpoint_every: int
    paper_row: str | None
    imports: list[str]


def load_yaml(path) -> DictConfig:
    """A saved config.yaml; a corrupt one is one line that names it."""
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml's parser and OmegaConf raise many kinds
        raise ConfigError(f"{path} is not a valid config ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                          "repair or delete it")
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} is not a valid config (expected a mapping of settings)")
    return cfg


def _build(cls, data: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown, missing = sorted(set(data) - known), sorted(known - set(data))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; valid: {', '.join(sorted(known))}")
    if missing:
        raise ConfigError(f"missing key {where}.{missing[0]}; a config file under conf/ must set it")
    return cls(**data)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate(cfg: DictConfig) -> RunConfig:
    data = OmegaConf.to_container(cfg, resolve=False)
    for key in ("hydra", "run_dir", "overwrite"):  # runtime-only keys, not part of the run's identity
        data.pop(key, None)
    data = OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    if "method" not in data:  # the config.yaml of runs made before methods existed
        data["method"] = {"name": "reft", "run_name": "", **dict.fromkeys(PEFT_KEYS)}
    groups = {"model": ModelConfig, "method": MethodConfig, "intervention": InterventionConfig, "task": TaskConfig,
              "optim": OptimConfig, "eval": EvalConfig}
    parts = {k: _build(c, data.pop(k, {}) or {}, k) for k, c in groups.items()}
    run = _build(RunConfig, {**data, **parts}, "config")
    return check_run(run)


def installed(module: str) -> bool:
    return module in sys.modules or importlib.util.find_spec(module) is not None


def check_run(run: RunConfig) -> RunConfig:
    if run.imports and os.getcwd() not in sys.path:  # `imports=[my_interventions]` finds ./my_interventions.py
        sys.path.insert(0, os.getcwd())
    for module in run.imports:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"imports: cannot import {module!r} ({e})")
    from .interventions import INTERVENTIONS, activation
    from .methods import METHODS
    kinds = ", ".join(sorted(INTERVENTIONS))
    _check(run.method.name in METHODS, f"unknown method {run.method.name!r}; valid: {', '.join(METHODS)}")
    if run.method.name != "reft":
        check_peft(run.method)
    _check(run.intervention.type in INTERVENTIONS, f"unknown intervention {run.intervention.type!r}; valid: {kinds}")
    _check(run.task.name in TASK_NAMES, f"unknown task {run.task.name!r}; valid: {', '.join(TASK_NAMES)}")
    _check(_is_int(run.rank) and run.rank > 0, f"rank {run.rank!r} must be a positive integer")
    try:
        run.positions = PositionSpec.parse(run.positions)  # parsed once; the spec travels from here
    except ValueError as e:
        raise ConfigError(str(e))
    _check(isinstance(run.share_weights, bool), f"share_weights {run.share_weights!r} must be true or false")
    _check(_is_int(run.seed) and run.seed >= 0, f"seed {run.seed!r} must be an integer ≥ 0")
    _check(run.compat in ("paper", "pyreft"), f"compat {run.compat!r} is unknown; valid: paper, pyreft")
    _check(run.autocast in (None, "bfloat16", "float16"), f"autocast {run.autocast!r} is unknown; valid: null, bfloat16, float16")
    bad = sorted(set(run.decoding) - DECODING_KEYS)
    _check(not bad, f"decoding.{bad[0] if bad else ''} is unknown; valid: {', '.join(sorted(DECODING_KEYS))}")
    _check(isinstance(run.device, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", run.device) is not None,
           f"device {run.device!r} is unknown; valid: auto, cpu, cuda, cuda:N, mps")
    if run.device != "auto" and run.device != "cpu":
        import torch
        available = torch.cuda.is_available() if run.device.startswith("cuda") else torch.backends.mps.is_available()
        _check(available, f"device {run.device!r} is not available to this torch ({torch.__version__}); valid here: auto, cpu")
    _check(run.logger in ("none", "wandb"), f"logger {run.logger!r} is unknown; valid: none, wandb")
    for where, value in (("model.dtype", run.model.dtype), ("intervention.dtype", run.intervention.dtype)):
        _check(value in DTYPES, f"{where} {value!r} is unknown; valid: {', '.join(DTYPES)}")
    _check(run.intervention.dtype != "auto", "intervention.dtype 'auto' is not allowed; valid: float32, bfloat16, float16")
    try:
        activation(run.intervention.act_fn)
    except ValueError as e:
        raise ConfigError(str(e))
    _check(0 <= run.intervention.dropout < 1, f"intervention.dropout {run.intervention.dropout} must be in [0, 1)")
    _check(_is_int(run.model.max_length) and run.model.max_length > 0, f"model.max_length {run.model.max_length!r} must be a positive integer")
    o = run.optim
    _check(o.lr > 0, f"optim.lr {o.lr} must be positive")
    _check(_is_int(o.batch_size) and o.batch_size > 0, f"optim.batch_size {o.batch_size!r} must be a positive integer")
    _check(_is_int(o.grad_accum) and o.grad_accum > 0, f"optim.grad_accum {o.grad_accum!r} must be a positive integer")
    _check(0 <= o.warmup_ratio < 1, f"optim.warmup_ratio {o.warmup_ratio} must be in [0, 1)")
    _check(_is_int(o.max_steps) and (o.max_steps > 0 or o.max_steps == -1),
           f"optim.max_steps {o.max_steps!r} is not allowed; valid: a positive integer, or -1 to run optim.epochs")
    _check(o.epochs > 0 or o.max_steps > 0, "optim.epochs or optim.max_steps must be positive")
    _check(_is_int(run.log_every) and run.log_every > 0, f"log_every {run.log_every!r} must be a positive integer")
    _check(run.task.max_train_examples is None or (_is_int(run.task.max_train_examples) and run.task.max_train_examples > 0),
           f"task.max_train_examples {run.task.max_train_examples!r} must be a positive integer or null")
    needs = {**task_class(run.task.name).requires, **({"wandb": "wandb"} if run.logger == "wandb" else {}),
             **({"peft": "peft"} if run.method.name != "reft" else {})}
    missing = [m for m in needs if not installed(m)]
    _check(not missing, f"{', '.join(missing)} is not installed; pip install -e '.[{needs[missing[0]] if missing else ''}]'")
    _check(_is_int(run.checkpoint_every) and run.checkpoint_every >= 0, f"checkpoint_every {run.checkpoint_every!r} must be an integer ≥ 0")
    _check(run.eval.max_examples is None or (_is_int(run.eval.max_examples) and run.eval.max_examples > 0),
           f"eval.max_examples {run.eval.max_examples!r} must be a positive integer or null (all examples)")
    _check(_is_int(run.eval.batch_size) and run.eval.batch_size > 0, f"eval.batch_size {run.eval.batch_size!r} must be a positive integer")
    return run


PEFT_KEYS = ("rank", "alpha", "dropout", "target_modules", "feedforward_modules")


def check_peft(m: MethodConfig) -> None:
    _check(_is_int(m.rank) and m.rank > 0, f"method.rank {m.rank!r} must be a positive integer")
    _check(m.dropout is None or 0 <= m.dropout < 1, f"method.dropout {m.dropout} must be in [0, 1)")
    _check(m.name not in ("lora", "dora") or (m.alpha is not None and m.alpha > 0),
           f"method.alpha {m.alpha!r} must be positive for {m.name}")
    _check(bool(m.target_modules) and all(isinstance(t, str) and t for t in m.target_modules),
           f"method.target_modules {m.target_modules!r} must be a non-empty list of linear layer names, e.g. [q_proj, v_proj]")
    extra = sorted(set(m.feedforward_modules or []) - set(m.target_modules))
    _check(not extra, f"method.feedforward_modules: {extra[0] if extra else ''!r} is not in method.target_modules; "
                      f"valid: {', '.join(m.target_modules)}")


# Settings that do not change what a run computes: ignored when runs are compared or grouped.
RUNTIME_KEYS = ("eval.", "method.run_name", "logger", "wandb.", "device", "overwrite", "dry_run", "log_every", "checkpoint_every",
                "imports", "run_dir", "model.short_name", "model.device_map", "model.gradient_checkpointing", "autocast")


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """{'optim': {'lr': 1}} → {'optim.lr': '1'} (values as JSON)."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, sort_keys=True)
    return flat


def identity(config: dict) -> dict[str, str]:
    """The settings that define what a run computes, flattened (runs from before methods existed are ReFT runs)."""
    config = {"method": {"name": "reft"}, **config}
    return {k: v for k, v in flatten(config).items() if not k.startswith(RUNTIME_KEYS) and k not in RUNTIME_KEYS}


def config_changes(saved: dict, current: dict) -> list[str]:
    a, b = identity(saved), identity(current)
    return [f"{k}: {a.get(k, '—')} → {b.get(k, '—')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
