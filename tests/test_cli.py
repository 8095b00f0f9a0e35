"""The real entry point end to end on a tiny model built in code: train → eval → table, a multirun
grid, dry runs, bad input, and a pinned fixed-seed loss trajectory."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["model=hub", "task=commonsense", "optim.batch_size=4", "eval.batch_size=8", "task.max_new_tokens=6"]


def reftrun(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([sys.executable, "-m", "reftrun.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"reftrun {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def tiny_args(model_dir, data_dir):
    return TINY + [f"model.name_or_path={model_dir}", f"task.data_dir={data_dir}"]


def test_train_eval_table_end_to_end(tmp_path, tiny_model_dir, commonsense_dir):
    run = tmp_path / "run"
    reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=3", f"hydra.run.dir={run}")
    for name in ("config.yaml", "reft.json", "interventions.safetensors", "metrics.json", "train_log.jsonl", "run.json"):
        assert (run / name).exists(), name
    spec = json.loads((run / "reft.json").read_text())
    assert {k: spec[k] for k in ("intervention", "rank", "layers", "positions", "share_weights", "hidden_size", "dtype")} == \
        {"intervention": "loreft", "rank": 8, "layers": [0, 1], "positions": "f7+l7", "share_weights": True,
         "hidden_size": 64, "dtype": "float32"}
    assert spec["num_parameters"] == 2 * (2 * 8 * 64 + 8) and spec["base_model"] == str(tiny_model_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    sets = ["boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa"]
    for stage in ("before", "after"):
        assert set(metrics[stage]) == set(sets) | {"average"}
        assert metrics[stage]["boolq"]["n"] == 3
    rows = [json.loads(l) for l in (run / "predictions" / "after" / "boolq.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and set(rows[0]) == {"id", "prompt", "generation", "extracted", "gold", "correct"}
    assert sum(r["correct"] for r in rows) / 3 == metrics["after"]["boolq"]["accuracy"]
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 3

    # eval reloads from the folder alone, and merges without losing other entries
    out = reftrun("eval", f"run_dir={run}", "eval.sets=[boolq,piqa]", "eval.max_examples=2")
    merged = json.loads((run / "metrics.json").read_text())
    assert merged["after"]["boolq"]["n"] == 2 and merged["after"]["piqa"]["n"] == 2
    assert merged["after"]["openbookqa"] == metrics["after"]["openbookqa"] and merged["before"] == metrics["before"]
    accs = [merged["after"][s]["accuracy"] for s in sets]
    assert merged["after"]["average"]["accuracy"] == pytest.approx(sum(accs) / len(accs))
    assert "| boolq | 2 |" in out.stdout

    # a re-run of a finished folder is skipped, not overwritten
    again = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=3", f"hydra.run.dir={run}")
    assert "already holds a finished run" in again.stdout
    assert json.loads((run / "metrics.json").read_text()) == merged


def test_multirun_grid_and_table(tmp_path, tiny_model_dir, commonsense_dir):
    sweep = tmp_path / "sweep"
    reftrun("train", "-m", *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=2", "rank=2,4", "seed=1,2",
            "eval.before=false", "eval.sets=[boolq,piqa]", f"hydra.sweep.dir={sweep}")
    runs = sorted(p.parent for p in sweep.rglob("reft.json"))
    assert [p.name for p in runs] == ["loreft_r2_f7+l7_L0_1_tied_s1", "loreft_r2_f7+l7_L0_1_tied_s2",
                                      "loreft_r4_f7+l7_L0_1_tied_s1", "loreft_r4_f7+l7_L0_1_tied_s2"] or \
        [p.name for p in runs] == sorted(p.name for p in runs)
    assert len(runs) == 4
    table = reftrun("table", f"runs={sweep}").stdout
    for rank in (2, 4):
        accs = [json.loads((r / "metrics.json").read_text())["after"]["boolq"]["accuracy"] * 100
                for r in runs if f"_r{rank}_" in r.name]
        mean = sum(accs) / 2
        row = next(l for l in table.splitlines() if f"| loreft | {rank} |" in l)
        assert f"{mean:.1f} ±" in row and "| 2/2 |" in row


def test_dry_run_prints_parameter_count(tmp_path, tiny_model_dir, commonsense_dir):
    out = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "dry_run=true", "rank=4", "layers=1",
                  "share_weights=false", f"hydra.run.dir={tmp_path / 'dry'}")
    # untied f7+l7 on one layer: prefix and suffix interventions, 2 × (2·4·64 + 4)
    assert "trainable intervention parameters: 1,032" in out.stdout
    assert not (tmp_path / "dry" / "reft.json").exists()


# A fixed-seed loss trajectory (tiny 2-layer Llama, seed 42, LoReFT r8 f7+l7 tied, lr 1e-2, batch 4),
# recorded on torch 2.13.0 CPU: a change here means the numerics changed.
PINNED_LOSSES = [5.577247231693591, 5.541419357549949, 5.5449568267561435, 5.525911458333334]


def test_pinned_loss_trajectory(tmp_path, tiny_model_dir, commonsense_dir):
    run = tmp_path / "pinned"
    reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=4", "optim.lr=1e-2", "optim.warmup_ratio=0", "eval.before=false",
            "eval.sets=[boolq]", "optim.group_by_length=false", f"hydra.run.dir={run}")
    losses = [json.loads(l)["loss"] for l in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 4
    assert losses == pytest.approx(PINNED_LOSSES, rel=1e-4), losses


BAD_INPUTS = [
    (["task=nope"], "unknown task 'nope'; valid: commonsense, commonsense_offline"),
    (["model=nope"], "unknown model 'nope'; valid:"),
    (["intervention=nope"], "unknown intervention 'nope'; valid: consreft, direft"),
    (["rank=0"], "rank 0 must be a positive integer"),
    (["rank=-3"], "rank -3 must be a positive integer"),
    (["rank=abc"], "rank 'abc' must be a positive integer"),
    (["positions=f7+"], "positions 'f7+' is malformed; valid:"),
    (["positions=x3"], "positions 'x3' is malformed; valid:"),
    (["layers=99"], "layers 99 out of range for a 2-layer model; valid: 0..1 or all"),
    (["layers=[a,b]"], "layers ['a', 'b'] is malformed; valid:"),
    (["rank=100"], "rank 100 exceeds the model's hidden size 64"),
    (["eval.sets=[nope]"], "unknown eval set 'nope' for task commonsense; valid:"),
    (["compat=nope"], "compat 'nope' is unknown; valid: paper, pyreft"),
]


@pytest.mark.parametrize("override,message", BAD_INPUTS, ids=[b[0][0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_before_any_model_loads(tmp_path, tiny_model_dir, commonsense_dir, override, message):
    proc = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), *override,
                   f"hydra.run.dir={tmp_path / 'bad'}", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "bad" / "reft.json").exists()


def test_eval_of_a_missing_run_dir_is_one_line(tmp_path):
    proc = reftrun("eval", f"run_dir={tmp_path / 'nowhere'}", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


PLUGIN = '''
import torch
from torch import nn
from reftrun.interventions import Intervention, register


@register("scaled_steer")
class ScaledSteer(Intervention):
    """h + W2ᵀ tanh(W1 h): a user's own intervention in one small file."""

    def __init__(self, hidden_size, rank, **kw):
        super().__init__(hidden_size, rank, **kw)
        self.proj, self.up = self.linear(), self.linear(bias=False)

    def edit(self, h):
        return torch.tanh(self.proj(h)) @ self.up.weight
'''


def test_a_user_intervention_in_one_file_trains_and_reloads(tmp_path, tiny_model_dir, commonsense_dir):
    (tmp_path / "my_interventions.py").write_text(PLUGIN)
    run = tmp_path / "plugin"
    reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "imports=[my_interventions]",
            "intervention.type=scaled_steer", "optim.max_steps=2", "eval.before=false", "eval.sets=[boolq]",
            f"hydra.run.dir={run}", cwd=tmp_path)
    assert json.loads((run / "reft.json").read_text())["intervention"] == "scaled_steer"
    reftrun("eval", f"run_dir={run}", cwd=tmp_path)
    bad = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "intervention.type=scaled_steer",
                  f"hydra.run.dir={tmp_path / 'x'}", check=False, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown intervention 'scaled_steer'; valid: consreft" in bad.stderr
