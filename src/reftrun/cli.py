"""`reftrun train|eval|table`: a thin dispatcher onto Hydra apps (run folders are runio's, training is train's).

Configs come from the package's conf/ (a wheel) or the checkout's conf/ (editable install).
Bad input ends with one line on stderr and exit code 2 (HYDRA_FULL_ERROR=1 shows the traceback).
"""
import difflib
import os
import re
import shutil
import sys
from pathlib import Path

import hydra
from hydra._internal import utils as hydra_utils
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import ConfigError, validate


def config_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").exists():
            return candidate
    raise RuntimeError(f"reftrun's conf/ directory is missing (looked in {here / 'conf'} and {here.parents[1] / 'conf'})")


CONF = config_dir()
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")


def check_group_choices(args: list[str], command: str = "train") -> None:
    """Fail in one line on `task=nope` or `modl=x` before Hydra prints its multi-line listing."""
    known = [*(GROUPS if command == "train" else []), *OmegaConf.load(CONF / f"{command}.yaml"), "hydra"]
    for arg in args:
        key, sep, values = arg.partition("=")
        top = key.split(".")[0].split("/")[0]
        if sep and not key.startswith(("+", "~")) and top not in known:
            close = difflib.get_close_matches(top, known, n=1)
            raise ConfigError(f"unknown key {top!r}" + (f"; did you mean {close[0]}?" if close else "")
                              + f" valid: {', '.join(sorted(set(known) - {'defaults'}))}")
        if key == "hydra/launcher" and values == "slurm" and shutil.which("srun") is None:
            raise ConfigError("hydra/launcher=slurm needs a SLURM cluster (no srun here); leave it out to run on this machine")
        key = key.lstrip("+~")
        if not sep or key not in GROUPS or command != "train":
            continue
        valid = sorted(p.stem for p in (CONF / key).glob("*.yaml"))
        if "(" in values:  # a sweep function such as glob(t1_*) or choice(a,b): Hydra expands it
            continue
        for value in values.split(","):
            if value and value not in valid:
                raise ConfigError(f"unknown {key} {value!r}; valid: {', '.join(valid)}")


def _train(cfg: DictConfig) -> float | None:
    """Returns the trained model's average score (what Hydra's Optuna sweeper maximises)."""
    from .metrics import headline
    from .runio import finished_run, remove_if_empty
    from .table import run_summary
    from .train import train
    run = validate(cfg)
    run_dir = Path(cfg.run_dir)
    resolved = resolved_config(cfg)
    done = None if run.dry_run else finished_run(run_dir, resolved, cfg.get("overwrite", False))
    if done is not None:
        print(f"[reftrun] {run_dir} already holds this finished run; skipping (overwrite=true redoes it)")
        return headline(done["after"].get("average", {}))
    metrics = train(run, run_dir, resolved)
    if run.dry_run:
        remove_if_empty(run_dir)  # a dry run leaves nothing behind
    elif metrics:
        print(f"\nrun folder: {run_dir}\n\n{run_summary(metrics)}")
        return headline(metrics["after"].get("average", {}))
    return None


def resolved_config(cfg: DictConfig) -> dict:
    resolved = redact(OmegaConf.to_container(cfg, resolve=True))
    resolved.pop("hydra", None)
    return resolved


SECRET = re.compile(r"(.*_)?(token|secret|password|api_?key|access_key)", re.IGNORECASE)


def redact(data):
    """Secrets (wandb or hub tokens passed as config) never reach saved configs or loggers."""
    if isinstance(data, dict):
        return {k: "***" if SECRET.fullmatch(str(k)) else redact(v) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


def _eval(cfg: DictConfig) -> None:
    from .evaluate_run import evaluate_run
    if not cfg.get("run_dir"):
        raise ConfigError("run_dir is required: reftrun eval run_dir=<a run folder written by reftrun train>")
    evaluate_run(cfg)


def _table(cfg: DictConfig) -> None:
    from .table import build_table, find_runs
    print(build_table(str(cfg.runs), cfg.stage, cfg.format, cfg.compare, cfg.figure, cfg.get("eval")))
    if cfg.curves:
        from .curves import draw_curves
        runs = find_runs(str(cfg.runs))
        draw_curves(runs, Path(cfg.curves))
        print(f"[reftrun] wrote {cfg.curves}: loss and held-out scores of {len(runs)} run(s) side by side")


FAILURES: list[str] = []
FAILED_FOLDERS: list[bool] = []  # whether each failed job left a folder holding its run.json


def guarded(fn):
    """Bad input → one line on stderr, exit 2, no traceback. In a multirun the failure is recorded in the
    job's folder (run.json) and the sweep goes on; the command exits 1 at the end."""
    def run(cfg: DictConfig):
        from .runio import Preempted
        try:
            return fn(cfg)
        except Preempted as e:
            print(f"reftrun: {e}", file=sys.stderr)
            sys.exit(e.code)
        except KeyboardInterrupt:  # Ctrl-C before a run's own handler is installed (or in eval/table)
            print("reftrun: interrupted", file=sys.stderr)
            sys.exit(130)
        except (ConfigError, OSError, ValueError, FloatingPointError, RuntimeError, ImportError, OmegaConfBaseException) as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            message = one_line(e)
            print(f"reftrun: error: {message}", file=sys.stderr)
            kept = record_failure(cfg, message)
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                FAILURES.append(message)
                FAILED_FOLDERS.append(kept)
                return
            sys.exit(2)
    return run


def record_failure(cfg: DictConfig, message: str) -> bool:
    """A failed train job says so in its own folder. Returns whether its run.json now holds the failure."""
    from .runio import record_failure as record
    if HydraConfig.get().job.config_name != "train" or "run_dir" not in cfg:
        return False
    try:
        resolved = resolved_config(cfg)
    except OmegaConfBaseException:  # resolving the config may be what failed
        resolved = None
    return record(Path(str(cfg.run_dir)), resolved, message)


APPS = {"train": guarded(_train), "eval": guarded(_eval), "table": guarded(_table)}


USAGE = """usage: reftrun <command> [key=value ...]

commands:
  train   train one ReFT run (a grid with -m) and write its run folder under runs/
  eval    score a finished run folder again; results go to <run folder>/evals/<name>/
  table   mean ± sd over seeds per eval set from run folders (markdown, csv or latex)

most common:
  reftrun train
  reftrun train task=commonsense task.data_dir=data rank=4 layers=[2,10,18] positions=f3+l3 share_weights=false

reftrun <command> --help shows that command's settings."""


def one_line(ex: Exception, doing: str = "write") -> str:
    """An error raised by Hydra itself (composing the config, creating the run folder, launching, a sweeper's
    end) as one line that names the value."""
    text = f"{ex} {ex.__cause__ or ''}"
    missing = re.search(r"Missing mandatory value: ([\w.]+)", text)
    if missing and missing.group(1) == "model.name_or_path":
        return "model=hub needs model.name_or_path=<hub id or local folder>, e.g. model.name_or_path=meta-llama/Llama-2-7b-hf"
    if missing:
        return f"{missing.group(1)} is required; pass {missing.group(1)}=<value>"
    if isinstance(ex, OSError) and ex.filename:
        return f"cannot {doing} {ex.filename} ({ex.strerror}); pass hydra.run.dir=<a writable folder>"
    return str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__


def run_and_report(func):
    """Replaces Hydra's reporter: its errors become one line and exit 2, like reftrun's own."""
    try:
        return func()
    except Exception as ex:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = f"all {len(FAILURES)} job(s) of the sweep failed; the first: {FAILURES[0]}" if FAILURES \
            else one_line(ex, "create the run folder")
        print(f"reftrun: error: {message}", file=sys.stderr)
        sys.exit(2)


def command_help(command: str) -> str:
    """eval's and table's own settings: their yaml's documented keys (Hydra's help would list train's groups)."""
    text = (CONF / f"{command}.yaml").read_text().split("\ndefaults:")[0]
    return f"usage: reftrun {command} [key=value ...]\n\n{text.strip()}"


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in APPS:
        given = sys.argv[1] if len(sys.argv) > 1 else ""
        print(USAGE)
        if given not in ("", "-h", "--help"):
            print(f"reftrun: error: unknown command {given!r}; valid: {', '.join(APPS)}", file=sys.stderr)
        sys.exit(0 if given in ("-h", "--help") else 2)
    command = sys.argv.pop(1)
    if command != "train" and {"-h", "--help"} & set(sys.argv[1:]):
        print(command_help(command))
        sys.exit(0)
    sys.argv[0] = f"reftrun {command}"
    hydra_utils.run_and_report = run_and_report
    app = hydra.main(config_path=str(CONF), config_name=command, version_base="1.3")(APPS[command])
    try:
        check_group_choices(sys.argv[1:], command)
    except ConfigError as e:
        print(f"reftrun: error: {e}", file=sys.stderr)
        sys.exit(2)
    app()
    if FAILURES:
        where = "; see run.json in their folders" if any(FAILED_FOLDERS) else ""
        print(f"reftrun: {len(FAILURES)} job(s) of the sweep failed (the first: {FAILURES[0]}){where}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
