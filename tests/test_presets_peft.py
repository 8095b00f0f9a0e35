"""PEFT baselines beside ReFT (issue 12): every LoRA/DoRA preset composes, its adapters are built on the meta device
(offline, no weights), and its trainable-parameter share rounds to the paper's printed Params % under the convention
its paper row records ("params_of": "base" = trainable/base, "total" = trainable/(base+trainable), the figure peft's
print_trainable_parameters() prints; null = no convention reproduces the printed figure, see "params_note")."""
from functools import lru_cache

import pytest
from hydra import compose, initialize_config_dir

from reftrun.cli import CONF
from reftrun.config import validate
from reftrun.methods import dry_run
from reftrun.objectives import objective_for
from reftrun.table import PAPER
from reftrun.tasks import task_for_run

PEFT_PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")
                      if "override /method:" in p.read_text() and "override /method: reft" not in p.read_text())


@lru_cache(maxsize=None)
def counts(preset: str) -> tuple[dict, str]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        run = validate(compose("train", overrides=[f"experiment={preset}"]))
    assert run.paper_row in PAPER, run.paper_row
    task, _ = task_for_run(run)  # a GLUE task is a classifier: the base is the body without the head, as in train
    return dry_run(run, objective_for(task, run.compat).num_labels, task.kind), run.paper_row


def share(c: dict, params_of: str) -> float:
    trainable, base = c["num_parameters"], c["base_parameters"]
    return 100 * trainable / (base + trainable if params_of == "total" else base)


def test_the_peft_presets_are_found():
    # Table 1: LoRA, DoRA, DoRA (half) × 4 models; Table 2: LoRA × 2; Table 4: LoRA × 8 tasks × 2 sizes
    assert len(PEFT_PRESETS) == 12 + 2 + 16, PEFT_PRESETS


def test_every_row_names_a_known_convention():
    for key, row in PAPER.items():
        assert row.get("params_of", "base") in ("base", "total", None), key
        if row.get("params_of", "base") is None:
            assert row.get("params_note"), key  # a row that cannot match says why
        if "params_printed" in row:
            assert float(row["params_printed"]) == row["params_pct"], key


@pytest.mark.parametrize("preset", [p for p in PEFT_PRESETS if "_glue-" not in p])
def test_peft_preset_parameter_share_matches_the_paper(preset):
    c, paper_row = counts(preset)
    row = PAPER[paper_row]
    printed = row.get("params_printed", str(row["params_pct"]))  # "0.670": the paper's 3 decimals, not json's 0.67
    decimals = len(printed.split(".")[1])
    assert f"{share(c, row['params_of']):.{decimals}f}" == printed, (preset, c)
    other = "base" if row["params_of"] == "total" else "total"  # the convention matters: the other one misses
    assert f"{share(c, other):.{decimals}f}" != printed, (preset, c)


# LoRA r8 on query,value (LoRA paper Table 9): 2 × 8 × (d + d) per block; the paper's base counts (docs/reference/paper_results.md §6.2)
GLUE_LORA = {"table4/roberta-base/lora": (12 * 2 * 8 * 2 * 768, 124_645_632),
             "table4/roberta-large/lora": (24 * 2 * 8 * 2 * 1024, 355_359_744)}


@pytest.mark.parametrize("preset", [p for p in PEFT_PRESETS if "_glue-" in p])
def test_glue_lora_share_is_counted_and_the_printed_figure_is_not_reproduced(preset):
    c, paper_row = counts(preset)
    row = PAPER[paper_row]
    assert row["params_of"] is None
    # the adapters alone (the paper leaves the classification head out of Params %), on the paper's base count
    assert (c["num_parameters"], c["base_parameters"]) == GLUE_LORA[paper_row], (preset, c)
    printed = row["params_printed"]
    for params_of in ("base", "total"):  # if one of these ever matches, record it in paper_results.json
        assert f"{share(c, params_of):.3f}" != printed, (preset, params_of, c)
