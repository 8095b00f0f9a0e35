"""Every shipped config composes and validates; conf/ also works from a built wheel."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from reftrun.cli import CONF, GROUPS
from reftrun.config import ConfigError, validate

OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
REQUIRED = {("model", "hub"): ["model.name_or_path=some/model"]}


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_validates(group, option):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"{group}={option}", *REQUIRED.get((group, option), [])])
    run = validate(cfg)
    if group not in ("experiment", "hparams_search"):  # those two set keys across the config
        assert getattr(run, group) is not None


def test_shortcuts_reach_the_run_config():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["rank=4", "layers=[2,10]", "positions=f3", "share_weights=false", "seed=7"])
    run = validate(cfg)
    assert (run.rank, run.layers, str(run.positions), run.share_weights, run.seed) == (4, [2, 10], "f3", False, 7)


def test_unknown_key_is_named():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["+optim.lr_typo=1"])
    with pytest.raises(ConfigError, match="unknown key optim.lr_typo; valid: batch_size"):
        validate(cfg)


def test_conf_ships_inside_the_wheel(tmp_path):
    root = Path(__file__).parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(root)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("reftrun-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    assert "reftrun/conf/train.yaml" in names and "reftrun/conf/model/smollm2.yaml" in names
    # the unpacked wheel, outside the checkout, finds its own conf/ and composes the default config
    code = ("from reftrun.cli import CONF; from hydra import compose, initialize_config_dir; "
            "from reftrun.config import validate;\n"
            "with initialize_config_dir(config_dir=str(CONF), version_base='1.3'): cfg = compose('train')\n"
            "print(CONF); print(validate(cfg).task.name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    conf_dir, task = out.stdout.split()
    assert Path(conf_dir) == tmp_path / "site" / "reftrun" / "conf" and task == "sentiment_offline"


def test_slurm_launcher_preset_composes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.max_num_timeout == 5 and launcher.signal_delay_s == 120
