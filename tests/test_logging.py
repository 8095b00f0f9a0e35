"""logger=wandb hands wandb the resolved config and logs every step (wandb.init is faked: no network)."""
import json
import sys
import types

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from reftrun.cli import CONF
from reftrun.config import validate
from reftrun.train import train


class FakeRun:
    def __init__(self, **kwargs):
        self.init, self.logged, self.finished = kwargs, [], False

    def log(self, data, step=None):
        self.logged.append((step, data))

    def finish(self):
        self.finished = True


def test_wandb_gets_resolved_config_and_step_logs(tmp_path, monkeypatch, tiny_model_dir, commonsense_dir):
    runs = []
    fake = types.SimpleNamespace(init=lambda **kw: runs.append(FakeRun(**kw)) or runs[-1])
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model=hub", "model.dtype=float32", f"model.name_or_path={tiny_model_dir}", "task=commonsense",
                                          f"task.data_dir={commonsense_dir}", "optim.max_steps=2", "eval.before=false",
                                          "eval.sets=[boolq]", "logger=wandb", "task.max_new_tokens=4"])
    resolved = OmegaConf.to_container(cfg, resolve=False)
    resolved.pop("run_dir")  # needs Hydra's runtime; the CLI resolves it
    resolved = OmegaConf.to_container(OmegaConf.create(resolved), resolve=True)
    train(validate(cfg), tmp_path, resolved)
    (run,) = runs
    assert run.init["mode"] == "offline" and run.init["config"]["rank"] == 8
    assert "${" not in json.dumps(run.init["config"])  # resolved, no interpolation strings in the dashboard
    steps = [s for s, d in run.logged if "train/loss" in d]
    assert steps == [1, 2] and run.finished
    assert any("eval/boolq" in d for _, d in run.logged)


def test_secrets_never_reach_saved_configs(tmp_path, tiny_model_dir, commonsense_dir):
    from conftest import reftrun, tiny_args
    run = tmp_path / "run"
    reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "+wandb.api_key=sk-SECRET123", "+wandb.hf_token=hf_SECRET456",
            "optim.max_steps=1", "eval.before=false", "eval.sets=[boolq]", f"hydra.run.dir={run}")
    text = "".join(p.read_text() for p in run.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json", ".jsonl"))
    assert "SECRET" not in text and "api_key: '***'" in (run / "config.yaml").read_text()
