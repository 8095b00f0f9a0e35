"""The real entry point end to end on a tiny model built in code: train → eval → table, a multirun
grid, dry runs, bad input, and a pinned fixed-seed loss trajectory."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import TINY, assert_one_line_error, reftrun, tiny_args


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
    assert len(rows) == 3 and set(rows[0]) == {"id", "prompt", "generation", "extracted", "filter", "gold", "correct"}
    assert sum(r["correct"] for r in rows) / 3 == metrics["after"]["boolq"]["accuracy"]
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 3

    # eval reloads from the folder alone and writes beside the training's results, never over them
    trained = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    out = reftrun("eval", f"run_dir={run}", "eval.sets=[boolq,piqa]", "eval.max_examples=2")
    assert {p: p.read_bytes() for p in trained} == trained
    merged = json.loads((run / "evals" / "boolq_piqa_max2" / "metrics.json").read_text())
    assert set(merged["after"]) == {"boolq", "piqa", "average"} and merged["after"]["boolq"]["n"] == 2
    assert len((run / "evals" / "boolq_piqa_max2" / "predictions" / "after" / "piqa.jsonl").read_text().splitlines()) == 2
    assert "| boolq | 2 |" in out.stdout and "evals/boolq_piqa_max2" in out.stdout
    reftrun("eval", f"run_dir={run}", "name=again", "eval.sets=[boolq]")
    assert (run / "evals" / "again" / "metrics.json").exists()
    # table: the training's results unless told otherwise
    table = reftrun("table", f"runs={run}").stdout
    assert f"{100 * metrics['after']['openbookqa']['accuracy']:.1f} ± 0.0" in table and "openbookqa" in table
    assert "openbookqa" not in reftrun("table", f"runs={run}", "eval=boolq_piqa_max2").stdout

    # a re-run of a finished folder is skipped, not overwritten
    again = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=3", f"hydra.run.dir={run}")
    assert "already holds this finished run" in again.stdout
    assert json.loads((run / "metrics.json").read_text()) == metrics


def test_multirun_grid_and_table(tmp_path, tiny_model_dir, commonsense_dir):
    sweep = tmp_path / "sweep"
    reftrun("train", "-m", *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=2", "rank=2,4", "seed=1,2",
            "eval.before=false", "eval.sets=[boolq,piqa]", f"hydra.sweep.dir={sweep}")
    runs = sorted(p.parent for p in sweep.rglob("reft.json"))
    assert [p.name for p in runs] == ["loreft_r2_f7+l7_Lall_tied_s1", "loreft_r2_f7+l7_Lall_tied_s2",
                                      "loreft_r4_f7+l7_Lall_tied_s1", "loreft_r4_f7+l7_Lall_tied_s2"]
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
    assert "trainable parameters: 1,032" in out.stdout
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


BAD_INPUTS = [  # (overrides, the one line's expected content)
    (["task=nope"], "unknown task 'nope'; valid: alpaca, arithmetic, boolq_offline, commonsense"),
    (["model=nope"], "unknown model 'nope'; valid: hub, llama-13b, llama-7b"),
    (["intervention=nope"], "unknown intervention 'nope'; valid: consreft, direft"),
    (["intervention.type=nope"], "unknown intervention 'nope'; valid: consreft, direft"),
    (["rank=0"], "rank 0 must be a positive integer"),
    (["rank=-3"], "rank -3 must be a positive integer"),
    (["rank=abc"], "rank 'abc' must be a positive integer"),
    (["rank=2.5"], "rank 2.5 must be a positive integer"),
    (["rank=100"], "rank 100 exceeds the model's hidden size 64; valid: 1..64"),
    (["positions=f7+"], "positions 'f7+' is malformed; valid:"),
    (["positions=x3"], "positions 'x3' is malformed; valid:"),
    (["positions=f-1"], "positions 'f-1' is malformed; valid:"),
    (["layers=99"], "layers 99 out of range for a 2-layer model; valid: 0..1 or all"),
    (["layers=[]"], "layers [] selects no layer; valid: all"),
    (["layers=[a,b]"], "layers ['a', 'b'] is malformed; valid:"),
    (["layers=3-1"], "layers '3-1' selects no layer"),
    (["eval.sets=[nope]"], "unknown eval set 'nope' for task commonsense; valid: boolq, piqa"),
    (["compat=nope"], "compat 'nope' is unknown; valid: paper, pyreft"),
    (["logger=tensorboard"], "logger 'tensorboard' is unknown; valid: none, wandb"),
    (["model.dtype=float8"], "model.dtype 'float8' is unknown; valid: auto, float32"),
    (["intervention.dropout=1.5"], "intervention.dropout 1.5 must be in [0, 1)"),
    (["intervention.act_fn=swishy"], "unknown act_fn 'swishy'; valid: linear, relu"),
    (["optim.lr=0"], "optim.lr 0 must be positive"),
    (["optim.batch_size=0"], "optim.batch_size 0 must be a positive integer"),
    (["+optim.lr_typo=1"], "unknown key optim.lr_typo; valid: batch_size"),
    (["model.max_length=5"], "more than max_length=5; raise max_length"),
    (["log_every=0"], "log_every 0 must be a positive integer"),
    (["task.max_train_examples=0"], "task.max_train_examples 0 must be a positive integer or null"),
    (["imports=[no_such_module]"], "imports: cannot import 'no_such_module'"),
    # issue 14: accepted silently or a traceback before
    (["eval.max_examples=0"], "eval.max_examples 0 must be a positive integer or null"),
    (["eval.max_examples=-5"], "eval.max_examples -5 must be a positive integer or null"),
    (["eval.max_examples=-1"], "eval.max_examples -1 must be a positive integer or null"),
    (["seed=-1"], "seed -1 must be an integer ≥ 0"),
    (["layers=[2,2,2]"], "layers [2, 2, 2] names layer 2 more than once"),
    (["optim.max_steps=0"], "optim.max_steps 0 is not allowed; valid: a positive integer, or -1 to run optim.epochs"),
    (["device=cuda"] if not __import__("torch").cuda.is_available() else ["device=tpu"], "device '"),
    (["modl=smollm2"], "unknown key 'modl'; did you mean model?"),
    (["model.name_or_path=./no/such/model"], "model path ./no/such/model does not exist (a local path: the hub was not tried)"),
    (["model.name_or_path=someone/no-such-model"], "model someone/no-such-model is not in the local cache (HF_HUB_OFFLINE=1"),
    (["hydra/launcher=slurm"], "hydra/launcher=slurm needs a SLURM cluster (no srun here)"),
]


@pytest.mark.parametrize("override,message", BAD_INPUTS, ids=[b[0][0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_before_any_model_loads(tmp_path, tiny_model_dir, commonsense_dir, override, message):
    assert_one_line_error(tmp_path, message, *tiny_args(tiny_model_dir, commonsense_dir), *override)


def write_data(root, train_text=None, test_text=None):
    (root / "commonsense_170k").mkdir(parents=True)
    (root / "boolq").mkdir()
    if train_text is not None:
        (root / "commonsense_170k" / "train.json").write_text(train_text)
    if test_text is not None:
        (root / "boolq" / "test.json").write_text(test_text)
    return root


GOOD = json.dumps([{"instruction": "Please answer: is the sun a star?\n\nAnswer format: true/false", "answer": "true"}])
BAD_DATA = [
    ("missing", None, GOOD, "data file {root}/commonsense_170k/train.json not found; fetch it with: "
                            "python scripts/prepare_data.py commonsense --data-dir {root}"),
    ("empty", "[]", GOOD, "holds no records; expected a non-empty JSON list"),
    ("not json", "{oops", GOOD, "is not valid JSON"),
    ("no answer field", json.dumps([{"instruction": "x"}]), GOOD, "record 0 lacks field(s) answer; required: instruction, answer"),
    ("missing eval file", GOOD, None, "data file {root}/boolq/test.json not found"),
    ("integer answer", json.dumps([{"instruction": "x", "answer": 1}]), GOOD,
     "record 0 field answer is 1 (int); expected text"),
    ("object not list", json.dumps({"instruction": "x", "answer": "true"}), GOOD,
     "holds a JSON dict; expected a JSON list of records"),
]


@pytest.mark.parametrize("name,train_text,test_text,message", BAD_DATA, ids=[b[0] for b in BAD_DATA])
def test_bad_data_files(tmp_path, tiny_model_dir, name, train_text, test_text, message):
    root = write_data(tmp_path / "data", train_text, test_text)
    assert_one_line_error(tmp_path, message.format(root=root), *tiny_args(tiny_model_dir, root), "eval.sets=[boolq]")


def test_tokenizer_without_pad_unk_or_eos(tmp_path, commonsense_dir):
    from conftest import tiny_llama
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    model_dir = tmp_path / "nopad"
    tiny_llama().save_pretrained(model_dir)
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    PreTrainedTokenizerFast(tokenizer_object=raw).save_pretrained(model_dir)
    assert_one_line_error(tmp_path, "has no pad, unk or eos token; set pad_token in its tokenizer_config.json",
                          *tiny_args(model_dir, commonsense_dir))


def test_unsupported_architecture_names_the_paths_tried(tmp_path, commonsense_dir):
    from conftest import byte_tokenizer
    from transformers import XLNetConfig, XLNetLMHeadModel
    model_dir = tmp_path / "xlnet"
    XLNetLMHeadModel(XLNetConfig(vocab_size=259, d_model=32, n_layer=2, n_head=2, d_inner=64)).save_pretrained(model_dir)
    byte_tokenizer().save_pretrained(model_dir)
    proc = reftrun("train", *tiny_args(model_dir, commonsense_dir), "layers=all", f"hydra.run.dir={tmp_path / 'x'}",
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unsupported model XLNetLMHeadModel: no block list at any of model.layers" in proc.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir, commonsense_dir):
    run = tmp_path_factory.mktemp("finished") / "run"
    reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=1", "eval.before=false",
            "eval.sets=[boolq]", f"hydra.run.dir={run}")
    return run


def test_checkpoint_from_a_model_with_another_hidden_size(tmp_path, finished_run):
    import shutil
    from conftest import byte_tokenizer, tiny_llama
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    other = tmp_path / "wide"
    tiny_llama(hidden=96).save_pretrained(other)
    byte_tokenizer().save_pretrained(other)
    spec = json.loads((run / "reft.json").read_text())
    (run / "reft.json").write_text(json.dumps({**spec, "base_model": str(other)}))
    assert_one_line_error(tmp_path, "are for hidden size 64, but", f"run_dir={run}", command="eval")


def test_corrupted_or_truncated_intervention_file(tmp_path, finished_run):
    import shutil
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    data = (run / "interventions.safetensors").read_bytes()
    (run / "interventions.safetensors").write_bytes(data[: len(data) // 2])
    before = (run / "metrics.json").read_text()
    assert_one_line_error(tmp_path, "interventions.safetensors is corrupted or truncated", f"run_dir={run}", command="eval")
    assert (run / "metrics.json").read_text() == before  # nothing already written is touched


def test_unknown_eval_set_on_eval(tmp_path, finished_run):
    assert_one_line_error(tmp_path, "unknown eval set 'nope' for task commonsense", f"run_dir={finished_run}",
                          "eval.sets=[nope]", command="eval")


def test_results_glob_that_matches_nothing(tmp_path):
    assert_one_line_error(tmp_path, "no run folders match", f"runs={tmp_path}/nothing/*", command="table")


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


def test_a_folder_holding_other_settings_is_neither_resumed_nor_skipped(tmp_path, finished_run):
    import shutil
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    config = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    proc = reftrun("train", f"model.name_or_path={config['model']['name_or_path']}", *TINY,
                   f"task.data_dir={config['task']['data_dir']}", "optim.max_steps=1", "eval.before=false",
                   "eval.sets=[boolq]", "optim.lr=0.5", f"hydra.run.dir={run}", check=False)
    assert proc.returncode == 2 and "holds a run with other settings (optim.lr: 0.0009 → 0.5)" in proc.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # the finished run is untouched


def test_unknown_decoding_key(tmp_path, tiny_model_dir, commonsense_dir):
    assert_one_line_error(tmp_path, "decoding.beams is unknown; valid: do_sample, early_stopping",
                          *tiny_args(tiny_model_dir, commonsense_dir), "+decoding.beams=4")


# ---- issue 14: a new user's commands, from the command line ----

def test_eval_without_run_dir(tmp_path):
    assert_one_line_error(tmp_path, "run_dir is required: reftrun eval run_dir=<", command="eval")


def test_model_hub_without_a_name(tmp_path, commonsense_dir):
    assert_one_line_error(tmp_path, "model=hub needs model.name_or_path=<hub id or local folder>", "model=hub",
                          "task=commonsense", f"task.data_dir={commonsense_dir}")


@pytest.mark.parametrize("where", ["a file", "under a file", "read-only"])
def test_a_run_folder_that_cannot_be_written(tmp_path, tiny_model_dir, commonsense_dir, where):
    target = tmp_path / "file"
    target.write_text("not a folder")
    run = {"a file": target, "under a file": target / "run", "read-only": Path("/sys/reftrun-run")}[where]
    proc = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), f"hydra.run.dir={run}", check=False)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"reftrun: error: cannot create the run folder {run} ("), lines
    assert target.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [target]


def copy_run(finished_run, tmp_path):
    import shutil
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    return run


def test_corrupt_config_yaml_under_eval(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    (run / "config.yaml").write_text("model: [unclosed\n")
    assert_one_line_error(tmp_path, f"{run}/config.yaml is not a valid config (", f"run_dir={run}", command="eval")
    assert not (run / "evals").exists()


@pytest.mark.parametrize("text,message", [("{oops", "reft.json is not valid JSON"),
                                          ('{"rank": 8}', "reft.json is malformed"), ("[1]", "reft.json is malformed")])
def test_malformed_reft_json_under_eval(tmp_path, finished_run, text, message):
    run = copy_run(finished_run, tmp_path)
    (run / "reft.json").write_text(text)
    assert_one_line_error(tmp_path, f"{run}/{message}", f"run_dir={run}", command="eval")


@pytest.mark.parametrize("text", ["{oops", "[1, 2]", '{"after": [1]}'])
def test_corrupt_metrics_json_under_table(tmp_path, finished_run, text):
    run = copy_run(finished_run, tmp_path)
    (run / "metrics.json").write_text(text)
    assert_one_line_error(tmp_path, f"{run}/metrics.json is ", f"runs={run}", command="table")


@pytest.mark.parametrize("override,message", [("stage=nope", "stage 'nope' is unknown; valid: after, before"),
                                              ("compare=foo", "compare 'foo' is unknown; valid: none, paper"),
                                              ("format=xml", "format 'xml' is unknown; valid: markdown, csv, latex")])
def test_table_refuses_unknown_choices(tmp_path, finished_run, override, message):
    assert_one_line_error(tmp_path, message, f"runs={finished_run}", override, command="table")


def test_result_files_honour_the_umask(finished_run):
    mask = os.umask(0)
    os.umask(mask)
    files = [finished_run / n for n in ("config.yaml", "metrics.json", "run.json", "reft.json", "train_log.jsonl",
                                        "interventions.safetensors")] + list((finished_run / "predictions").rglob("*.jsonl"))
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(0o666 & ~mask) for f in files}


def test_overwrite_clears_the_old_outputs_first(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    stale = [run / "predictions" / "after" / "piqa.jsonl", run / "evals" / "old" / "metrics.json", run / "checkpoint.pt"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    config = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    reftrun("train", f"model.name_or_path={config['model']['name_or_path']}", *TINY,
            f"task.data_dir={config['task']['data_dir']}", "optim.max_steps=1", "eval.before=false",
            "eval.sets=[boolq]", "overwrite=true", f"hydra.run.dir={run}")
    assert not any(p.exists() for p in stale)
    assert (run / "predictions" / "after" / "boolq.jsonl").exists()
    assert json.loads((run / "run.json").read_text())["status"] == "done"


def fake_run(root, name, seed, after, rank=8):
    run = root / name
    run.mkdir(parents=True)
    config = {"task": {"name": "commonsense", "options": {}}, "model": {"name_or_path": "m", "short_name": "m"},
              "intervention": {"type": "loreft"}, "rank": rank, "layers": "all", "positions": "f7+l7",
              "share_weights": True, "seed": seed}
    (run / "config.yaml").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps({"after": after}))
    return run


def test_table_never_averages_seeds_scored_on_different_n_and_says_why(tmp_path):
    fake_run(tmp_path, "s1", 1, {"boolq": {"accuracy": 0.5, "n": 8}, "piqa": {"accuracy": 0.5, "n": 8}})
    fake_run(tmp_path, "s2", 2, {"boolq": {"accuracy": 0.0, "n": 3}, "piqa": {"accuracy": 0.25, "n": 8}})
    row = next(l for l in reftrun("table", f"runs={tmp_path}").stdout.splitlines() if "| 2/2 |" in l)
    assert row.endswith("| — (seeds scored on different n: 3, 8) | 37.5 ± 17.7 | — (seeds scored on different n: 3, 8) |")


def test_table_tells_a_never_evaluated_set_from_a_missing_seed(tmp_path):
    fake_run(tmp_path, "r4", 1, {"boolq": {"accuracy": 0.5, "n": 3}, "piqa": {"accuracy": 0.5, "n": 3}}, rank=4)
    fake_run(tmp_path, "r8", 1, {"boolq": {"accuracy": 0.5, "n": 3}}, rank=8)
    failed = fake_run(tmp_path, "r8s2", 2, {}, rank=8)
    (failed / "metrics.json").unlink()
    table = reftrun("table", f"runs={tmp_path}").stdout
    row = next(l for l in table.splitlines() if "| 8 |" in l)
    assert "| 1/2 | — (1/2) | — (not evaluated) |" in row


def test_table_names_a_run_folder_without_config_yaml(tmp_path):
    fake_run(tmp_path, "good", 1, {"boolq": {"accuracy": 0.5, "n": 3}})
    orphan = fake_run(tmp_path, "orphan", 2, {"boolq": {"accuracy": 0.9, "n": 3}})
    (orphan / "config.yaml").unlink()
    proc = reftrun("table", f"runs={tmp_path}")
    assert f"reftrun: warning: {orphan} holds results but no config.yaml; it is left out of the table" in proc.stderr
    assert "| 1/1 | 50.0 ± 0.0 |" in proc.stdout


def test_figure_paper_legend_error_bars_shared_scale_titles_and_zero_versus_missing(tmp_path):
    from reftrun.table import collect, draw
    fake_run(tmp_path, "a1", 1, {"boolq": {"accuracy": 0.0, "n": 3}, "piqa": {"accuracy": 0.1, "n": 3}}, rank=4)
    fake_run(tmp_path, "a2", 2, {"boolq": {"accuracy": 0.0, "n": 3}, "piqa": {"accuracy": 0.5, "n": 3}}, rank=4)
    fake_run(tmp_path, "b1", 1, {"boolq": {"accuracy": 0.9, "n": 3}}, rank=8)
    fake_run(tmp_path, "b2", 2, {"boolq": {"accuracy": 0.8, "n": 3}}, rank=8)
    proc = reftrun("table", f"runs={tmp_path}", f"figure={tmp_path / 'fig.png'}")
    assert (tmp_path / "fig.png").stat().st_size > 1000, proc.stderr
    fig = draw(*collect(str(tmp_path)), str(tmp_path / "fig2.png"))
    axes = fig.axes
    assert all(ax.get_legend_handles_labels()[1] == ["reftrun (mean ± sd over seeds)"] for ax in axes)  # no paper bars
    assert len({ax.get_ylim() for ax in axes}) == 1 and axes[0].get_ylim()[0] == 0  # one shared scale
    assert ["rank 4" in axes[0].get_title(), "rank 8" in axes[1].get_title()] == [True, True]
    lows = [seg[0][1] for ax in axes for c in ax.collections for seg in c.get_segments()]  # error bar bottoms
    assert lows and min(lows) >= 0
    labels = [[t.get_text() for t in ax.texts] for ax in axes]
    assert labels[0][:2] == ["0.0", "30.0"] and labels[1][:2] == ["85.0", "missing"]  # 0 is not missing


def test_csv_gives_mean_sd_and_n_columns(tmp_path):
    import csv
    import io
    fake_run(tmp_path, "s1", 1, {"boolq": {"accuracy": 0.5, "n": 3}})
    fake_run(tmp_path, "s2", 2, {"boolq": {"accuracy": 0.0, "n": 3}})
    rows = list(csv.DictReader(io.StringIO(reftrun("table", f"runs={tmp_path}", "format=csv").stdout)))
    assert {k: rows[0][k] for k in ("boolq mean", "boolq sd", "boolq n")} == {"boolq mean": "25.0000",
                                                                         "boolq sd": "35.3553", "boolq n": "2"}


def test_a_sweep_whose_jobs_all_fail_before_any_folder_says_why(tmp_path, tiny_model_dir, commonsense_dir):
    proc = reftrun("train", "-m", *tiny_args(tiny_model_dir, commonsense_dir), "layers=98,99",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "2 job(s) of the sweep failed (the first: layers 98 out of range" in proc.stderr
    assert "run.json" not in proc.stderr


def test_an_optuna_sweep_whose_trials_all_fail_says_why(tmp_path, tiny_model_dir):
    gsm8k = Path(__file__).parent / "fixtures" / "gsm8k"
    proc = reftrun("train", "-m", "hparams_search=gsm8k_optuna", "model=hub", "model.dtype=float32", f"model.name_or_path={tiny_model_dir}",
                   f"task.data_dir={gsm8k}", "layers=99", "hydra.sweeper.n_trials=2",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", check=False)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("reftrun: error: all")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "No trials are completed" not in proc.stderr
    assert errors == ["reftrun: error: all 2 job(s) of the sweep failed; the first: layers 99 out of range for a "
                      "2-layer model; valid: 0..1 or all"], proc.stderr


README = (Path(__file__).parents[1] / "README.md").read_text()


def readme_blocks(language: str) -> list[str]:
    import re
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_usage_lists_the_three_commands_and_the_readmes_two_most_common_lines():
    usage = [l.split("#")[0].strip() for l in next(b for b in readme_blocks("bash") if b.startswith("reftrun train")).splitlines()[:2]]
    for args, code in (([], 2), (["--help"], 0), (["bogus"], 2)):
        proc = reftrun(*args, check=False)
        assert proc.returncode == code
        for line in ["train   train one ReFT run", "eval    score a finished run folder", "table   mean ± sd", *usage]:
            assert line in proc.stdout, (args, line)
    assert reftrun("bogus", check=False).stderr == "reftrun: error: unknown command 'bogus'; valid: train, eval, table\n"


@pytest.mark.parametrize("command,own,foreign", [("eval", "run_dir:", "optim"), ("table", "compare:", "optim")])
def test_each_command_has_its_own_help(command, own, foreign):
    out = reftrun(command, "--help").stdout
    assert out.startswith(f"usage: reftrun {command}") and own in out and foreign not in out


def test_the_readmes_custom_intervention_example_verbatim(tmp_path, tiny_model_dir, commonsense_dir):
    """The README's file and command as written (the tiny model and short-run settings appended), run by the
    installed `reftrun` script from the folder that holds the file: no `python -m`, so cwd is not on sys.path."""
    import shlex
    source = next(b for b in readme_blocks("python") if b.startswith("# my_interventions.py"))
    command = next(b for b in readme_blocks("bash") if "imports=[my_interventions]" in b).strip()
    (tmp_path / "my_interventions.py").write_text(source)
    script = Path(sys.executable).with_name("reftrun")
    words = shlex.split(command)
    assert words[0] == "reftrun" and script.exists()
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(script), *words[1:], *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=1",
                           "eval.before=false", "eval.sets=[boolq]", f"hydra.run.dir={run}"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "reft.json").read_text())["intervention"] == "scaled_steer"


@pytest.mark.parametrize("task,fetch", [("commonsense", "commonsense"), ("math", "arithmetic"), ("alpaca", "alpaca")])
def test_missing_data_names_the_tasks_own_prepare_data_subcommand(tmp_path, tiny_model_dir, task, fetch):
    data = tmp_path / "nodata"
    assert_one_line_error(tmp_path, f"python scripts/prepare_data.py {fetch} --data-dir {data}", "model=hub",
                          f"model.name_or_path={tiny_model_dir}", f"task={task}", f"task.data_dir={data}")
