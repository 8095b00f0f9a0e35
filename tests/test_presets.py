"""Paper reproduction: every preset composes and its trainable-parameter share equals the paper's (on the meta
device, offline); the transcription of the paper's numbers is consistent; `reftrun table` puts them beside ours."""
import json
import statistics

import pytest
from hydra import compose, initialize_config_dir

from reftrun.cli import CONF
from reftrun.config import validate
from reftrun.methods import dry_run
from reftrun.objectives import objective_for
from reftrun.table import PAPER, build_table
from reftrun.tasks import task_for_run
from conftest import reftrun

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# presets of a peft method (LoRA, DoRA, ...) count their adapters in test_presets_peft.py
REFT_PRESETS = [p for p in PRESETS if "override /method:" not in (CONF / "experiment" / f"{p}.yaml").read_text()
                or "override /method: reft" in (CONF / "experiment" / f"{p}.yaml").read_text()]


@pytest.mark.parametrize("preset", REFT_PRESETS)
def test_preset_parameter_share_matches_the_paper(preset):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        run = validate(compose("train", overrides=[f"experiment={preset}"]))
    assert run.paper_row in PAPER, run.paper_row
    task, _ = task_for_run(run)
    counts = dry_run(run, objective_for(task, run.compat).num_labels, task.kind)
    share = 100 * counts["num_parameters"] / counts["base_parameters"]
    expected = PAPER[run.paper_row]["params_pct"]  # docs/reference/paper_results.md §6.2 and the tables' Params % column
    decimals = len(str(expected).split(".")[1])
    assert round(share, decimals) == expected, (preset, share)


def test_every_table_row_has_presets():
    rows = set()
    for preset in PRESETS:
        text = (CONF / "experiment" / f"{preset}.yaml").read_text()
        assert text.splitlines()[2].startswith("#   reftrun train -m experiment=" + preset)  # the command comes first
        rows.add(next(l.split(": ")[1] for l in text.splitlines() if l.startswith("paper_row:")))
    assert rows == set(PAPER)


def test_transcribed_averages_equal_the_means_of_their_rows():
    for key, row in PAPER.items():
        if len(row["scores"]) > 1:  # docs/reference/paper_results.md checked every Avg against its row to within ±0.05
            assert statistics.mean(row["scores"].values()) == pytest.approx(row["average"], abs=0.051), key


def fake_run(root, name, paper_row, seed, scores):
    run = root / name
    run.mkdir(parents=True)
    config = {"task": {"name": "arithmetic", "options": {}}, "model": {"name_or_path": "yahma/llama-7b-hf",
              "short_name": "llama-7b"}, "intervention": {"type": "loreft"}, "rank": 8, "layers": "all",
              "positions": "f7+l7", "share_weights": True, "seed": seed, "paper_row": paper_row}
    (run / "config.yaml").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps({"after": {s: {"accuracy": v / 100, "n": 10} for s, v in scores.items()}}))


def test_table_beside_the_paper_in_three_formats_and_a_figure(tmp_path):
    fake_run(tmp_path, "s42", "table2/llama-7b/loreft", 42, {"AQuA": 20.0, "gsm8k": 25.0, "mawps": 75.0, "SVAMP": 45.0})
    fake_run(tmp_path, "s43", "table2/llama-7b/loreft", 43, {"AQuA": 22.0, "gsm8k": 27.0, "mawps": 77.0, "SVAMP": 47.0})
    table = build_table(str(tmp_path), compare="paper", figure=str(tmp_path / "fig.png"))
    lines = table.splitlines()
    assert "| 2/2 | 21.0 ± 1.4 | 26.0 ± 1.4 | 76.0 ± 1.4 | 46.0 ± 1.4 | 42.2 ± 1.4 |" in lines[2]
    assert lines[3].startswith("| paper (table2/llama-7b/loreft) |") and "| 21.4 | 26.0 | 76.2 | 46.8 | 42.6 |" in lines[3]
    assert lines[4].startswith("| Δ ours − paper |") and "| -0.4 | +0.0 | -0.2 | -0.8 | -0.4 |" in lines[4]
    assert (tmp_path / "fig.png").stat().st_size > 1000
    csv = build_table(str(tmp_path), fmt="csv").splitlines()  # a program reads it: mean, sd and n in their own columns
    assert csv[0].endswith(",seeds,AQuA mean,AQuA sd,AQuA n,gsm8k mean,gsm8k sd,gsm8k n,mawps mean,mawps sd,mawps n,"
                           "SVAMP mean,SVAMP sd,SVAMP n,average mean,average sd,average n")
    assert csv[1].endswith(",2/2,21.0000,1.4142,2,26.0000,1.4142,2,76.0000,1.4142,2,46.0000,1.4142,2,42.2500,1.4142,2")
    latex = build_table(str(tmp_path), fmt="latex")
    assert latex.startswith("\\begin{tabular}") and "21.0 $\\pm$ 1.4" in latex
    fake_run(tmp_path, "s44", "table2/llama-7b/loreft", 44, {})  # a failed seed: no silent mean over fewer seeds
    assert "— (2/3)" in build_table(str(tmp_path))


@pytest.mark.slow
def test_small_multirun_on_the_embedded_default_and_its_table(tmp_path):
    sweep = tmp_path / "sweep"
    reftrun("train", "-m", "rank=2,4", "seed=1,2", "optim.max_steps=3", "eval.before=false", "eval.max_examples=8",
            "task.options.train_size=24", "eval.batch_size=16", f"hydra.sweep.dir={sweep}")
    runs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(runs) == 4
    table = reftrun("table", f"runs={sweep}").stdout.splitlines()
    head = [h.strip() for h in table[0].strip("|").split("|")]
    for rank in (2, 4):
        row = [c.strip() for c in next(l for l in table if f"| loreft | {rank} |" in l).strip("|").split("|")]
        mine = [json.loads((r / "metrics.json").read_text())["after"] for r in runs if f"_r{rank}_" in r.name]
        for eval_set in ("vader_words",):
            values = [100 * m[eval_set]["accuracy"] for m in mine]
            expected = f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"
            assert row[head.index(eval_set)] == expected


def test_optuna_search_preset_runs_trials_and_keeps_each(tmp_path, tiny_model_dir):
    from conftest import FIXTURES
    sweep = tmp_path / "search"
    out = reftrun("train", "-m", "hparams_search=gsm8k_optuna", "model=hub", "model.dtype=float32", f"model.name_or_path={tiny_model_dir}",
                  f"task.data_dir={FIXTURES / 'gsm8k'}", "optim.max_steps=1", "eval.max_examples=2",
                  "task.max_new_tokens=2", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}")
    assert "Best value:" in out.stdout + out.stderr
    trials = sorted(p.parent.name for p in sweep.rglob("metrics.json"))
    assert trials == ["trial_0", "trial_1"]
