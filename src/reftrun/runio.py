"""Run folders: interventions as safetensors + reft.json, atomic JSON writes, metrics merging.

A run folder holds config.yaml (resolved), reft.json + interventions.safetensors, metrics.json,
predictions/<stage>/<set>.jsonl and train_log.jsonl. Every file is written to a temporary name and
renamed, so an interrupted run never leaves a truncated file behind.
"""
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .reft import Reft, ReftSpec

WEIGHTS, SPEC, HEAD = "interventions.safetensors", "reft.json", "head.safetensors"


def atomic_write(path: Path, content) -> None:
    """Write `content` (text, or a function that writes a file at the path it is given) to a temporary name
    beside `path`, then rename it: never a half-written file. The file's mode honours the umask (mkstemp and
    safetensors create 0600 files, which colleagues on a shared cluster cannot read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if callable(content):
            content(tmp)
        else:
            tmp.write_text(content)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path):
    """A JSON file's contents; a corrupt file is one line that names it."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({getattr(e, 'msg', e)}); repair or delete it")


def write_json(path: Path, data) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def merge_metrics(run_dir: Path, updates: dict) -> dict:
    """Read metrics.json, update it one level deep, write it back atomically."""
    path = Path(run_dir) / "metrics.json"
    metrics = read_json(path) if path.exists() else {}
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(metrics.get(key), dict):
            metrics[key].update(value)
        else:
            metrics[key] = value
    write_json(path, metrics)
    return metrics


def _save_tensors(tensors: dict, path: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "reftrun"}))


def save_reft(reft: Reft, run_dir: Path, head: dict | None = None) -> None:
    """Interventions (and a classifier's trained head, if any) as safetensors, plus reft.json."""
    run_dir = Path(run_dir)
    _save_tensors(reft.state_dict(), run_dir / WEIGHTS)
    if head:
        _save_tensors(head, run_dir / HEAD)
    write_json(run_dir / SPEC, {**reft.spec.to_dict(), "num_parameters": reft.num_parameters(),
                                "head_parameters": sum(p.numel() for p in (head or {}).values())})


def load_head(run_dir: Path, model) -> None:
    """Load a saved classifier head into `model` (safetensors only)."""
    path = Path(run_dir) / HEAD
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is missing, corrupted or truncated ({e})")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


def load_reft(run_dir: Path, hidden_size: int | None = None) -> Reft:
    """Rebuild the interventions from reft.json and load their weights (safetensors only, no pickle)."""
    run_dir = Path(run_dir)
    spec_path, weights_path = run_dir / SPEC, run_dir / WEIGHTS
    for p in (spec_path, weights_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found; is {run_dir} a finished reftrun run folder?")
    data = read_json(spec_path)
    try:
        data.pop("num_parameters", None)
        data.pop("head_parameters", None)
        spec = ReftSpec(**data)
    except (AttributeError, TypeError) as e:
        raise ValueError(f"{spec_path} is malformed ({e}); it does not describe interventions")
    if hidden_size is not None and hidden_size != spec.hidden_size:
        raise ValueError(f"interventions in {run_dir} are for hidden size {spec.hidden_size}, "
                         f"but the model has hidden size {hidden_size}")
    reft = Reft(spec)
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights_path} is corrupted or truncated ({e})")
    missing = set(reft.state_dict()) ^ set(state)
    if missing:
        raise ValueError(f"{weights_path} does not match {SPEC}: mismatched tensors {sorted(missing)[:3]}")
    reft.load_state_dict(state)
    return reft
