"""Training loop semantics: gradient accumulation equals one big batch (the loss is a mean over all target
tokens of the step), and the base model's weights never change."""
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file

from reftrun.cli import CONF
from reftrun.config import validate
from reftrun.train import train


def run_train(tmp_path, name, model_dir, data_dir, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model=hub", "model.dtype=float32", f"model.name_or_path={model_dir}", "task=commonsense",
                                          f"task.data_dir={data_dir}", "eval.before=false", "eval.sets=[boolq]",
                                          "task.max_new_tokens=2", "optim.group_by_length=false",
                                          "optim.warmup_ratio=0", *overrides])
    out = tmp_path / name
    out.mkdir()
    train(validate(cfg), out, {})
    return load_file(out / "interventions.safetensors")


def test_grad_accumulation_matches_one_big_batch(tmp_path, tiny_model_dir, commonsense_dir):
    big = run_train(tmp_path, "big", tiny_model_dir, commonsense_dir, "optim.batch_size=8", "optim.max_steps=2")
    accum = run_train(tmp_path, "accum", tiny_model_dir, commonsense_dir, "optim.batch_size=4", "optim.grad_accum=2",
                      "optim.max_steps=2")
    assert big.keys() == accum.keys()
    for key in big:
        torch.testing.assert_close(big[key], accum[key], rtol=1e-5, atol=1e-6)
    single = run_train(tmp_path, "single", tiny_model_dir, commonsense_dir, "optim.batch_size=4", "optim.max_steps=2")
    assert any(not torch.allclose(big[k], single[k]) for k in big)  # and the comparison can fail


def test_base_model_files_untouched(tmp_path, tiny_model_dir, commonsense_dir):
    before = load_file(tiny_model_dir / "model.safetensors")
    run_train(tmp_path, "run", tiny_model_dir, commonsense_dir, "optim.max_steps=2")
    after = load_file(tiny_model_dir / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_device_map_auto_trains(tmp_path, tiny_model_dir, commonsense_dir):
    """A smoke test of the device_map code path only: on a CPU-only machine accelerate puts every block on the CPU,
    so no sharding across devices is exercised here (that needs two GPUs)."""
    weights = run_train(tmp_path, "mapped", tiny_model_dir, commonsense_dir, "model.device_map=auto", "optim.max_steps=1")
    plain = run_train(tmp_path, "plain", tiny_model_dir, commonsense_dir, "optim.max_steps=1")
    assert all(torch.equal(weights[k], plain[k]) for k in plain)


def test_bf16_interventions_keep_a_float32_rotation(tmp_path, tiny_model_dir, commonsense_dir):
    """intervention.dtype=bfloat16: W and b in bf16, R factored in float32 (as pyreft keeps it)."""
    weights = run_train(tmp_path, "bf16", tiny_model_dir, commonsense_dir, "intervention.dtype=bfloat16", "optim.max_steps=2")
    assert weights["interventions.layer0.proj.weight"].dtype == torch.bfloat16
    assert weights["interventions.layer0.rotation.original"].dtype == torch.float32
