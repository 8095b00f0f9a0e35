"""The benchmark scripts: the issue's targets read off a record, bad input, the GPU workload's code path on a CPU,
and the scaling plot. (The figures themselves come from running the scripts; see README, Speed.)"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[1] / "scripts"


def load(name):
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


def test_targets_are_read_off_the_sides():
    bench = load("bench")
    figures = {"bare": {"tokens_per_s": 108.0, "eval_forced_per_s": 10.0},
               "reftrun": {"tokens_per_s": 100.0, "train_peak_rss_gib": 2.0, "eval_own_per_s": 9.0, "eval_forced_per_s": 9.5},
               "pyreft": {"eval_own_per_s": 3.0},
               "pyreft-trainer": {"tokens_per_s": 40.0, "train_peak_rss_gib": 2.5}}
    t = bench.targets(figures)
    assert t["train_vs_pyreft_trainer"]["value"] == pytest.approx(2.5) and t["train_vs_pyreft_trainer"]["met"]
    assert t["train_memory_vs_pyreft_trainer"]["value"] == pytest.approx(0.8) and t["train_memory_vs_pyreft_trainer"]["met"]
    assert t["eval_vs_pyreft"]["value"] == pytest.approx(3.0) and t["eval_vs_pyreft"]["met"]
    assert t["train_overhead"]["value"] == pytest.approx(0.08) and t["train_overhead"]["met"]
    assert t["generation_overhead"]["value"] == pytest.approx(10 / 9.5 - 1) and t["generation_overhead"]["met"]
    figures["reftrun"]["tokens_per_s"] = 79.0  # 1.98× pyreft's Trainer, 37% over the bare model
    figures["reftrun"]["train_peak_rss_gib"] = 2.6
    t = bench.targets(figures)
    assert not t["train_vs_pyreft_trainer"]["met"] and not t["train_overhead"]["met"]
    assert not t["train_memory_vs_pyreft_trainer"]["met"]
    del figures["pyreft"]
    assert bench.targets(figures)["eval_vs_pyreft"] == {**t["eval_vs_pyreft"], "value": None, "met": None}


def test_unknown_side_is_one_line_before_any_model_loads():
    out = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--sides", "reftrun,pyref"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].endswith("unknown side 'pyref'; valid: reftrun, pyreft, pyreft-trainer")


def test_gpu_workload_runs_tiny_on_cpu_with_the_bare_model_beside_it():
    out = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--workload", "llama7b-shape", "--tiny", "--steps", "2",
                          "--warmup", "1", "--batch", "2", "--eval-batch", "2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {l.split("|")[1].strip(): l.split("|")[2].strip() for l in out.stdout.splitlines() if l.startswith("| ")}
    assert float(rows["training tokens/s (non-pad)"]) > 0
    training, generation = rows["intervention overhead over the bare model: training, generation"].split(", ")
    assert training.endswith("%") and generation.endswith("%")


def test_scaling_plot_draws_every_series(tmp_path):
    scaling = load("bench_scaling")
    point = lambda n, r, beside, step, rate: {"length": n, "rank": r, "beside_rank": beside, "s_per_step": step, "eval_per_s": rate}
    runs = [point(n, r, 8, n / 100, 100 / n) for n in scaling.LENGTHS for r in (8, None)]
    runs += [point(128, r, beside, 1.0, 2.0) for beside in scaling.RANKS if beside != 8 for r in (beside, None)]
    axes = scaling.plot({"cpu": "test CPU", "threads": 2, "runs": {"float32": runs}}, tmp_path / "scaling.png").axes
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    assert [len(ax.lines) for ax in axes] == [2, 2, 2, 2]  # reftrun and the bare model in every panel
    assert list(axes[0].lines[1].get_xdata()) == list(scaling.LENGTHS)
    assert list(axes[2].lines[0].get_xdata()) == sorted(scaling.RANKS)
    assert list(axes[3].lines[0].get_ydata()) == [2.0, 2.0, 100 / 128, 2.0]  # rank 8: from the length sweep


def test_every_record_names_the_cpu_kernels_and_whether_bf16_is_native(monkeypatch):
    bench = load("bench")
    monkeypatch.setattr(bench.torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(bench.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert bench.cpu_features().endswith("AVX2 kernels, no native bf16")
    monkeypatch.setattr(bench.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert bench.cpu_features().endswith("AVX2 kernels, native bf16 (AVX512-BF16)")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN held to AVX2: bf16 is emulated
    assert bench.cpu_features().endswith("no native bf16")
