"""Nothing lost: a run killed at any point (SIGKILL or SIGTERM) and re-run with the same command ends
bit-identical to an uninterrupted run; NaN losses stop cleanly; a failing sweep job does not stop the sweep."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import reftrun, tiny_args

RESUMABLE = ["optim.max_steps=12", "checkpoint_every=1", "eval.before=false", "eval.sets=[boolq]",
             "intervention.dropout=0.2", "optim.batch_size=2", "optim.grad_accum=2"]
# dropout: the RNG state must be restored too; grad_accum=2: the data position is steps × grad_accum × world


def start(model_dir, data_dir, run_dir):
    cmd = [sys.executable, "-m", "reftrun.cli", "train", *tiny_args(model_dir, data_dir), *RESUMABLE,
           f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def interrupt_after(proc, run_dir, steps: int, sig) -> None:
    log = run_dir / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= steps:
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    proc.wait(timeout=300)


def same_result(a, b):
    wa, wb = load_file(a / "interventions.safetensors"), load_file(b / "interventions.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    la = [json.loads(l)["loss"] for l in (a / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(l)["loss"] for l in (b / "train_log.jsonl").read_text().splitlines()]
    assert la == lb and len(la) == 12


def test_kill_and_resume_is_bit_identical(tmp_path, tiny_model_dir, commonsense_dir):
    reference = tmp_path / "reference"
    reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), *RESUMABLE, f"hydra.run.dir={reference}")
    kills = [(3, signal.SIGKILL), (9, signal.SIGTERM), (6, signal.SIGINT)]  # every signal; 12 steps, grad_accum=2
    for steps, sig in kills:
        run = tmp_path / f"killed_{steps}_{sig.name}"
        proc = start(tiny_model_dir, commonsense_dir, run)
        interrupt_after(proc, run, steps, sig)
        stderr = proc.stderr.read()
        assert proc.returncode == {signal.SIGKILL: -9, signal.SIGTERM: 143, signal.SIGINT: 130}[sig], stderr
        if sig != signal.SIGKILL:  # preemption or Ctrl-C: a checkpoint at the step it stopped, and a clear status
            status = json.loads((run / "run.json").read_text())
            assert status["status"] == "interrupted" and (run / "checkpoint.pt").exists()
            (line,) = [l for l in stderr.splitlines() if l.startswith("reftrun:")]
            assert line.startswith(f"reftrun: {sig.name} at step ") and "re-run the same command to resume" in line
            assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
        assert not (run / "interventions.safetensors").exists()
        out = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), *RESUMABLE, f"hydra.run.dir={run}")
        assert "resuming" in out.stdout
        same_result(reference, run)
        assert not (run / "checkpoint.pt").exists() and json.loads((run / "run.json").read_text())["status"] == "done"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_an_interrupted_final_evaluation_keeps_the_training_and_resumes_to_evaluation(tmp_path, tiny_model_dir,
                                                                                       commonsense_dir, sig):
    args = [*tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=3", "checkpoint_every=0", "eval.before=false",
            "eval.batch_size=1", "task.max_new_tokens=300", f"hydra.run.dir={tmp_path / 'run'}"]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "reftrun.cli", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not (run / "checkpoint.pt").exists():
        time.sleep(0.002)  # with checkpoint_every=0 the checkpoint appears when training ends, before the evaluation
    time.sleep(0.5)
    proc.send_signal(sig)
    proc.wait(timeout=300)
    stderr = proc.stderr.read()
    assert proc.returncode == 128 + sig, stderr
    (line,) = [l for l in stderr.splitlines() if l.startswith("reftrun:")]
    assert line.startswith(f"reftrun: {sig.name} during the final evaluation") and "Traceback" not in stderr
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert (run / "checkpoint.pt").exists()
    log = (run / "train_log.jsonl").read_text()
    out = reftrun("train", *args)
    assert "from the checkpoint at step 3/3" in out.stdout
    assert (run / "train_log.jsonl").read_text() == log  # straight to evaluation: no step was redone
    assert json.loads((run / "run.json").read_text())["status"] == "done" and not (run / "checkpoint.pt").exists()
    assert set(json.loads((run / "metrics.json").read_text())["after"]) >= {"boolq", "average"}


def test_nan_loss_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, tiny_model_dir, commonsense_dir):
    run = tmp_path / "nan"
    proc = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "optim.lr=1e30",
                   "optim.warmup_ratio=0", "optim.max_steps=6", "checkpoint_every=1", "eval.before=false",
                   "eval.sets=[boolq]", f"hydra.run.dir={run}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [l for l in proc.stderr.splitlines() if "reftrun:" in l]  # other stderr lines are the progress bar
    assert line.startswith("reftrun: error: ")
    assert "loss became nan" in line and "the checkpoint at step" in line and "is kept" in line
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert (run / "checkpoint.pt").exists() and not (run / "interventions.safetensors").exists()


def test_a_failing_sweep_job_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_model_dir, commonsense_dir):
    sweep = tmp_path / "sweep"
    proc = reftrun("train", "-m", *tiny_args(tiny_model_dir, commonsense_dir), "optim.lr=9e-4,1e30",
                   "optim.warmup_ratio=0", "optim.max_steps=4", "eval.before=false",
                   "eval.sets=[boolq]", "hydra.sweep.subdir=lr${optim.lr}", f"hydra.sweep.dir={sweep}", check=False)
    assert proc.returncode == 1 and "1 job(s) of the sweep failed" in proc.stderr
    statuses = {p.name: json.loads((p / "run.json").read_text())["status"] for p in sweep.iterdir() if p.is_dir()}
    assert statuses == {"lr0.0009": "done", "lr1e+30": "failed"}
    table = reftrun("table", f"runs={sweep}").stdout
    assert "— (0/1)" in table and "| 0/1 |" in table


def test_torchrun_two_processes_equal_one_process_with_the_same_global_batch(tmp_path, tiny_model_dir, commonsense_dir):
    common = [*tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=3", "optim.batch_size=2",
              "optim.group_by_length=false", "eval.before=false", "eval.sets=[boolq]"]
    single = tmp_path / "single"
    reftrun("train", *common, "optim.grad_accum=2", f"hydra.run.dir={single}")
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reftrun.cli",
           "train", *common, "optim.grad_accum=1", f"hydra.run.dir={ddp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((ddp / "run.json").read_text())["world_size"] == 2
    a, b = load_file(single / "interventions.safetensors"), load_file(ddp / "interventions.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    la = [json.loads(l)["loss"] for l in (single / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(l)["loss"] for l in (ddp / "train_log.jsonl").read_text().splitlines()]
    assert la == pytest.approx(lb, rel=1e-6)
