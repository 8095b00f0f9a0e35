"""Training checkpoints: everything needed to continue a run bit-identically after a crash or preemption.

One file, run_dir/checkpoint.pt, replaced atomically: the method's weights, a classifier head, optimizer,
scheduler, loss scaler, RNG states and the number of finished steps (which fixes the data position). It holds
only tensors and plain Python values and is read back with torch.load(weights_only=True): no pickle code runs.
"""
import contextlib
import random
from pathlib import Path

import torch

from .runio import atomic_write

NAME = "checkpoint.pt"


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng():
    """Evaluation inside training must not shift the RNG stream (resumed runs skip it)."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def save_checkpoint(run_dir: Path, step: int, method, head: dict, opt, sched, scaler, extra: dict) -> None:
    state = {"step": step, "method": method.state_dict(), "head": {k: p.detach() for k, p in head.items()},
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
             "extra": extra, "rng": rng_state()}
    atomic_write(Path(run_dir) / NAME, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: Path, method, head: dict, opt, sched, scaler) -> dict | None:
    """Restore all state in place; returns {"step", "extra"} or None when there is no checkpoint."""
    path = Path(run_dir) / NAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"checkpoint {path} is unreadable ({type(e).__name__}); delete it to start the run afresh")
    method.load_state_dict(state["method"] if "method" in state else state["reft"])  # "reft": older checkpoints
    with torch.no_grad():
        for name, p in head.items():
            p.copy_(state["head"][name])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return {"step": state["step"], "extra": state["extra"]}


def remove_checkpoint(run_dir: Path) -> None:
    (Path(run_dir) / NAME).unlink(missing_ok=True)
