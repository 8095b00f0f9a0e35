"""`reftrun train|eval|table`: a thin dispatcher onto Hydra apps.

Configs come from the package's conf/ (a wheel) or the checkout's conf/ (editable install).
Bad input ends with one line on stderr and exit code 2 (HYDRA_FULL_ERROR=1 shows the traceback).
"""
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, validate


def config_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").exists():
            return candidate
    raise RuntimeError(f"reftrun's conf/ directory is missing (looked in {here / 'conf'} and {here.parents[1] / 'conf'})")


CONF = config_dir()
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())


def check_group_choices(args: list[str]) -> None:
    """Fail in one line on `task=nope` before Hydra prints its multi-line listing."""
    for arg in args:
        key, sep, values = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS:
            continue
        valid = sorted(p.stem for p in (CONF / key).glob("*.yaml"))
        for value in values.split(","):
            if value and value not in valid:
                raise ConfigError(f"unknown {key} {value!r}; valid: {', '.join(valid)}")


def _train(cfg: DictConfig) -> None:
    from .table import run_summary
    from .train import train
    run = validate(cfg)
    run_dir = Path(cfg.run_dir)
    done = run_dir / "run.json"
    if done.exists() and '"done"' in done.read_text() and not cfg.get("overwrite", False) and not run.dry_run:
        print(f"[reftrun] {run_dir} already holds a finished run; skipping (pass overwrite=true to redo it)")
        return
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    if not run.dry_run:
        from .runio import atomic_write
        atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    metrics = train(run, run_dir, resolved)
    if not run.dry_run:
        print(f"\nrun folder: {run_dir}\n\n{run_summary(metrics)}")


def _eval(cfg: DictConfig) -> None:
    from .evaluate_run import evaluate_run
    evaluate_run(cfg)


def _table(cfg: DictConfig) -> None:
    from .table import build_table
    print(build_table(str(cfg.runs), cfg.stage))


def guarded(fn):
    """Bad input → one line on stderr, exit 2, no traceback (Hydra would print its own)."""
    def run(cfg: DictConfig) -> None:
        try:
            fn(cfg)
        except (ConfigError, FileNotFoundError, ValueError, FloatingPointError) as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"reftrun: error: {e}", file=sys.stderr)
            sys.exit(2)
    return run


APPS = {"train": guarded(_train), "eval": guarded(_eval), "table": guarded(_table)}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in APPS:
        given = sys.argv[1] if len(sys.argv) > 1 else ""
        print(f"usage: reftrun {{{'|'.join(APPS)}}} [hydra overrides...]" + (f"\nunknown command {given!r}" if given not in ("", "-h", "--help") else ""),
              file=sys.stderr)
        sys.exit(0 if given in ("-h", "--help") else 2)
    command = sys.argv.pop(1)
    sys.argv[0] = f"reftrun {command}"
    app = hydra.main(config_path=str(CONF), config_name=command, version_base="1.3")(APPS[command])
    try:
        check_group_choices(sys.argv[1:])
    except ConfigError as e:
        print(f"reftrun: error: {e}", file=sys.stderr)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
