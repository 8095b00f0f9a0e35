"""The shape of the code (issue 11): tables load no torch; only tasks/ names a task; nothing asks a task its kind
with getattr; the loop reads in one screenful; the benchmarks time the shipped train_step."""
import ast
import re
import subprocess
import sys
from pathlib import Path

from reftrun.tasks import TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "reftrun"


def test_table_runs_without_torch(tmp_path):
    """`reftrun table` reads JSON: neither torch nor transformers is imported on the way."""
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task: {name: sentiment_offline, options: {}}\nmodel: {name_or_path: m, short_name: m}\n"
                                     "intervention: {type: loreft}\nrank: 8\nlayers: all\npositions: f7+l7\n"
                                     "share_weights: true\nseed: 42\n")
    (run / "metrics.json").write_text('{"after": {"words": {"accuracy": 0.9, "n": 300}}}')
    code = ("import sys; from reftrun.cli import main; sys.argv = ['reftrun', 'table', "
            f"'runs={tmp_path / 'runs'}']\ntry:\n    main()\nfinally:\n"
            "    print('LOADED', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "| 90.0" in out.stdout, out.stdout + out.stderr
    assert "LOADED []" in out.stdout, out.stdout


def test_no_module_outside_tasks_names_a_task():
    names = "|".join(sorted(TASKS, key=len, reverse=True))
    for path in SRC.rglob("*.py"):
        if "tasks" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not re.fullmatch(names, node.value), f"{path.name} names the task {node.value!r}"


def test_nothing_asks_a_task_its_kind_with_getattr():
    for path in SRC.rglob("*.py"):
        assert not re.search(r"getattr\(\w*task\w*,\s*[\"']kind", path.read_text()), path.name


def test_the_training_loop_fits_one_screenful():
    tree = ast.parse((SRC / "train.py").read_text())
    (train,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train"]
    assert train.end_lineno - train.lineno + 1 <= 90


def test_benchmarks_import_the_shipped_train_step():
    bench = (SRC.parents[1] / "scripts" / "bench.py").read_text()
    assert "from reftrun.step import" in bench and "train_step" in bench
    assert not (SRC.parents[1] / "scripts" / "bench_gpu.py").exists()
