"""Run folders: atomic writes, JSON, metrics merging, the folder's lifecycle and the run recorder. Torch-free.

A run folder holds config.yaml (resolved), the method's description and weights (reft.json +
interventions.safetensors, or adapter.json + adapter.safetensors), metrics.json, run.json (status),
predictions/<stage>/<set>.jsonl, train_log.jsonl and curves.png. Every file is written to a temporary name
and renamed, so an interrupted run never leaves a truncated file behind.
"""
import json
import math
import os
import shutil
import signal
from pathlib import Path

# reftrun's own outputs: what overwrite=true clears (nothing else in the folder is touched); *_outputs.json and
# judge/ are what a task writes for an external judge
OUTPUTS = ("checkpoint.pt", "metrics.json", "run.json", "train_log.jsonl", "reft.json", "interventions.safetensors",
           "adapter.json", "adapter.safetensors", "head.safetensors", "predictions", "evals", "judge", "*_outputs.json",
           "wandb", "curves.png")


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


def clear_outputs(run_dir: Path) -> None:
    """overwrite=true: the old run's outputs go first, so that none of them outlives it (only reftrun's own names)."""
    for path in (p for name in OUTPUTS for p in Path(run_dir).glob(name)):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def remove_if_empty(run_dir: Path) -> None:
    """Remove a run folder Hydra created for nothing, and its parents while they are empty."""
    for folder in [run_dir, *run_dir.parents]:
        if folder == Path.cwd() or not folder.is_dir() or any(folder.iterdir()):
            break
        folder.rmdir()


def finished_run(run_dir: Path, resolved: dict, overwrite: bool) -> dict | None:
    """Before a run starts: with `overwrite` the old outputs go; a folder holding other settings is refused
    (the folder name fixes only some of them); a finished run of the same settings returns its metrics (skip)."""
    from .config import ConfigError, config_changes, load_yaml
    from omegaconf import OmegaConf
    saved = run_dir / "config.yaml"
    if overwrite:
        clear_outputs(run_dir)
        return None
    if not saved.exists():
        return None
    changes = config_changes(OmegaConf.to_container(load_yaml(saved)), resolved)
    if changes:
        raise ConfigError(f"{run_dir} holds a run with other settings ({'; '.join(changes[:3])}); "
                          "pass overwrite=true to replace it or hydra.run.dir=<dir> to keep both")
    status = run_dir / "run.json"
    if status.exists() and read_json(status).get("status") == "done":
        return read_json(run_dir / "metrics.json")
    return None


def record_failure(run_dir: Path, resolved: dict | None, message: str) -> bool:
    """A failed job says so in its own folder (never in another run's); an empty folder is removed.
    Returns whether the folder now holds the failure in its run.json."""
    from .config import config_changes, load_yaml
    from omegaconf import OmegaConf
    if not run_dir.is_dir():
        return False
    if not any(run_dir.iterdir()):
        remove_if_empty(run_dir)
        return False
    saved = run_dir / "config.yaml"
    try:
        same = resolved is not None and saved.exists() and not config_changes(OmegaConf.to_container(load_yaml(saved)), resolved)
        status = run_dir / "run.json"
        if same:
            write_json(status, {**(read_json(status) if status.exists() else {}), "status": "failed", "error": message})
        return same
    except (ValueError, OSError):  # a corrupt or unwritable folder: the message on stderr is all there is
        return False


def logged_step(line: str) -> float:
    """The step of a train_log line; a line cut short by a kill counts as past any checkpoint."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError):
        return math.inf


class Recorder:
    """What a run says about itself while it runs: run.json (status), train_log.jsonl and wandb. Only the main
    rank records; on other ranks every call does nothing."""

    def __init__(self, run_dir: Path, main: bool, status: dict, start: int, wandb: dict | None = None):
        self.run_dir, self.main, self.status = Path(run_dir), main, status
        self.log_path, self.logger = self.run_dir / "train_log.jsonl", None
        if not main:
            return
        kept = []  # a resumed run keeps the lines up to its checkpoint; a fresh run starts an empty log
        if start and self.log_path.exists():
            kept = [l for l in self.log_path.read_text().splitlines() if logged_step(l) <= start]
        atomic_write(self.log_path, "".join(l + "\n" for l in kept))
        self.set("running")
        if wandb is not None:
            import wandb as wandb_lib
            self.logger = wandb_lib.init(**wandb)

    def set(self, status: str, **extra) -> None:
        if self.main:
            write_json(self.run_dir / "run.json", {**self.status, "status": status, **extra})

    def log(self, record: dict) -> None:
        if not self.main:
            return
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.logger is not None:
            self.logger.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=record["step"])

    def finish(self, scores: dict) -> None:
        self.set("done")
        if self.logger is not None:
            self.logger.log({f"eval/{name}": value for name, value in scores.items()})
            self.logger.finish()


class Preempted(Exception):
    """SIGTERM (SLURM preemption) or SIGINT (Ctrl-C) arrived: the training so far is in the checkpoint and
    re-running the command resumes. `code` is the shell's exit status for that signal (143, 130)."""

    def __init__(self, signum: int, message: str):
        super().__init__(f"{signal.Signals(signum).name} {message}")
        self.code = 128 + signum
