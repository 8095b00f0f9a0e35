"""Every task: loading its fixture files, formatting byte-identical to the reference, extraction and scoring
on realistic generations, and one tiny end-to-end run per family."""
import json
import os

import pytest

from conftest import FIXTURES, TINY, reftrun
from reftrun.tasks import TASKS, Task, get_task
from reftrun.tasks.arithmetic import first_choice_letter, last_number
from reftrun.tasks.gsm8k import gold_answer

DATA = {"commonsense": "commonsense", "arithmetic": "arithmetic", "math": "arithmetic", "gsm8k": "gsm8k",
        "alpaca": "instruct", "ultrafeedback": "instruct"}


def correct_generation(name: str, gold: str) -> str:
    """What a model that knows the answer writes, in each task's own style."""
    if name in ("commonsense", "commonsense_offline", "sentiment_offline"):
        return f"the correct answer is {gold}"
    if name in ("arithmetic", "math") and gold.isalpha():
        return f"Let x be the cost. 3 pens cost 1.50, so 10 cost 5. The answer is ({gold})."
    return f"First 2 + 3 = 5, then 5 * 4 = 20. The final answer is: {gold}"


def task_class(name: str) -> type:
    """The class a TASKS entry names ("module:Class"), imported the way get_task imports it."""
    return type(get_task(name))


# Every registered task, read from the registry: a new task is tested without editing this file.
GENERATIVE = [n for n in sorted(TASKS) if getattr(task_class(n), "kind", None) != "classify"]  # classify: test_glue.py
NUMERIC = [n for n in sorted(TASKS) if task_class(n).filter == "flexible"]  # scored on the last number


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_resolves_to_its_class_and_config(name):
    module, cls = TASKS[name].split(":")
    task = get_task(name)
    assert isinstance(task, Task) and type(task).__name__ == cls and type(task).__module__ == f"reftrun.tasks.{module}"
    assert task.eval_sets and set(task.default_eval_sets) <= set(task.eval_sets)
    assert task.filter in (None, "strict", "flexible")
    assert (FIXTURES.parents[1] / "conf" / "task" / f"{name}.yaml").exists()  # selectable as task=<name>


def test_an_unknown_task_names_every_registered_one():
    with pytest.raises(ValueError) as err:
        get_task("nope")
    assert str(err.value) == f"unknown task 'nope'; valid: {', '.join(sorted(TASKS))}"


def test_the_registry_loops_see_the_papers_tasks():
    """The derived lists are not empty by accident (e.g. an attribute renamed)."""
    assert {"commonsense", "arithmetic", "gsm8k", "alpaca"} <= set(GENERATIVE) and "glue" not in GENERATIVE
    assert {"arithmetic", "math", "gsm8k"} <= set(NUMERIC) and "commonsense" not in NUMERIC


@pytest.mark.parametrize("name", GENERATIVE)
def test_every_task_formats_and_scores_its_sets(name):
    task = get_task(name, data_dir=FIXTURES / DATA.get(name, "commonsense"), seed=0, eval_per_set=3, train_per_set=5)
    train = task.train_examples()
    assert train and all(ex.prompt and ex.target for ex in train)
    for eval_set in task.eval_sets:
        examples = task.eval_examples(eval_set)
        assert examples and all(ex.prompt for ex in examples)
        for ex in examples:
            if task.filter is None:  # nothing to extract: scored by an external judge (alpaca, ultrafeedback)
                assert task.score(task.extract("Sure! Here you go.", ex.gold), ex.gold) is None
                continue
            assert task.score(task.extract(correct_generation(name, ex.gold), ex.gold), ex.gold) is True, (eval_set, ex.gold)
            assert task.score(task.extract("I am not sure, sorry", ex.gold), ex.gold) is False
            assert task.score(task.extract("", ex.gold), ex.gold) is False


def test_prompts_are_byte_identical_to_the_reference():
    math = get_task("arithmetic", data_dir=FIXTURES / "arithmetic")
    ex = math.eval_examples("SVAMP")[0]
    assert ex.prompt == ("Below is an instruction that describes a task. Write a response that appropriately "
                         "completes the request.\n\n### Instruction:\nThere are 7 birds on a tree. 2 fly away. How many "
                         "birds are left?\n\n### Response:\n")
    gsm = get_task("gsm8k", data_dir=FIXTURES / "gsm8k")
    test = gsm.eval_examples("test")[1]
    assert test.prompt == ("Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                           "How much did she earn?\nAnswer the above question. First think step by step and then "
                           "answer the final number.\n")
    assert test.target.endswith("$<<0.2*50=10>>10.\nThe final answer is:  10")  # the reference's double space
    assert test.gold == "10"
    alpaca = get_task("alpaca", data_dir=FIXTURES / "instruct")
    with_input = alpaca.train_examples()[1]
    assert with_input.prompt == ("Below is an instruction that describes a task, paired with an input that provides "
                                 "further context. Write a response that appropriately completes the request.\n\n"
                                 "### Instruction:\nTranslate the sentence to French.\n\n### Input:\nGood morning\n\n"
                                 "### Response:\n")
    cs = get_task("commonsense", data_dir=FIXTURES / "commonsense")
    assert cs.eval_examples("boolq")[0].prompt.endswith("Answer format: true/false\n")


def test_gsm8k_dev_is_the_last_300_training_rows():
    gsm = get_task("gsm8k", data_dir=FIXTURES / "gsm8k")
    rows = (FIXTURES / "gsm8k" / "gsm8k_main" / "train.jsonl").read_text().splitlines()
    dev, train = gsm.eval_examples("dev"), gsm.train_examples()
    assert len(dev) == 300 and len(train) == len(rows) - 300
    assert dev[0].prompt.startswith(json.loads(rows[-300])["question"])
    assert not {e.prompt for e in dev} & {t.prompt for t in train}
    full = get_task("gsm8k", data_dir=FIXTURES / "gsm8k", full_train=True).train_examples()
    assert len(full) == len(rows)


@pytest.mark.parametrize("text,expected", [
    ("She has 3 + 5 = 8 apples, then doubles them: 8 * 2 = 16. The answer is 16.", 16.0),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 18", 18.0),
    ("The total is 1,234.5 dollars.", 1234.5),
    ("It dropped to -3 degrees", -3.0),
    ("The answer is 42.", 42.0),
    ("", float("inf")),
    ("no digits here", float("inf")),
])
def test_last_number(text, expected):
    assert last_number(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("The answer is (B).", "B"),
    ("Let x be the price. Then 3x = 9, so x = 3. The answer is (A)", "A"),  # "Let": L is not A-E, "Then" T neither
    ("Both (C) and (D) look right; I pick (D).", "B"),                     # the B of "Both": as crude as the reference
    ("the answer is b", ""),
    ("", ""),
])
def test_first_choice_letter(text, expected):
    assert first_choice_letter(text) == expected


def test_commonsense_extraction_is_strict_exact_match():
    cs = get_task("commonsense", data_dir=FIXTURES / "commonsense")
    assert cs.score(cs.extract("the correct answer is answer1"), "answer1")
    assert cs.score(cs.extract("Hmm. the correct answer is answer1  \n"), "answer1")
    assert not cs.score(cs.extract("the correct answer is answer1 because it fits"), "answer1")  # stricter than LLM-Adapters
    assert not cs.score(cs.extract("The correct answer is answer1"), "answer1")                 # case-sensitive trigger
    assert gold_answer("so 5 + 7 = 12\n#### 1,234") == "1234"


@pytest.mark.parametrize("task,data,extra", [
    ("arithmetic", "arithmetic", ["decoding=beam4", "eval.sets=[AQuA,gsm8k]"]),
    ("gsm8k", "gsm8k", ["eval.sets=[test]"]),
    ("alpaca", "instruct", []),
])
def test_tiny_end_to_end_per_family(tmp_path, tiny_model_dir, task, data, extra):
    run = tmp_path / task
    reftrun("train", "model=hub", "model.dtype=float32", f"model.name_or_path={tiny_model_dir}", f"task={task}", f"task.data_dir={FIXTURES / data}",
            *[t for t in TINY if not t.startswith("task")], "task.max_new_tokens=4", "optim.max_steps=2",
            "eval.before=false", "eval.max_examples=2", *extra, f"hydra.run.dir={run}")
    metrics = json.loads((run / "metrics.json").read_text())["after"]
    if task == "alpaca":
        outputs = json.loads((run / "alpaca_eval_outputs.json").read_text())
        assert len(outputs) == 2 and set(outputs[0]) == {"instruction", "output", "generator", "dataset"}
        assert outputs[0]["dataset"] == "alpaca_eval" and outputs[0]["generator"] == task
        assert metrics["alpaca_eval"]["accuracy"] is None
        table = reftrun("table", f"runs={run}").stdout
        assert "| — (0/1) |" in table and " 0.0 " not in table  # never a 0 for an unjudged run
    else:  # each set's score is the mean of its rows, and each row's verdict is the task's own on its generation
        scorer = get_task(task, data_dir=FIXTURES / data)
        sets = [s for s in metrics if s != "average"]
        for s in sets:
            rows = [json.loads(l) for l in (run / "predictions" / "after" / f"{s}.jsonl").read_text().splitlines()]
            assert metrics[s]["n"] == len(rows) == 2 and metrics[s]["accuracy"] == sum(r["correct"] for r in rows) / 2
            assert all(r["correct"] == scorer.score(scorer.extract(r["generation"], r["gold"]), r["gold"]) for r in rows)
        assert metrics["average"]["accuracy"] == pytest.approx(sum(metrics[s]["accuracy"] for s in sets) / len(sets))


def test_alpaca_eval_judge_is_run_when_configured(tmp_path, tiny_model_dir, monkeypatch):
    """A stand-in `alpaca_eval` on PATH checks the command line and writes a leaderboard, as the real CLI does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "alpaca_eval").write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\nargs = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "assert args['--annotators_config'] == 'alpaca_eval_gpt4' and os.environ['IS_ALPACA_EVAL_2'] == 'False'\n"
        "outputs = json.load(open(args['--model_outputs']))\nout = os.path.join(args['--output_path'], 'alpaca_eval_gpt4')\n"
        "os.makedirs(out, exist_ok=True)\nopen(os.path.join(out, 'leaderboard.csv'), 'w').write("
        "',win_rate,standard_error\\n' + outputs[0]['generator'] + ',85.6,1.2\\n')\n")
    (bin_dir / "alpaca_eval").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    reference = tmp_path / "reference.json"
    reference.write_text("[]")
    run = tmp_path / "judged"
    reftrun("train", "model=hub", "model.dtype=float32", f"model.name_or_path={tiny_model_dir}", "task=alpaca", f"task.data_dir={FIXTURES / 'instruct'}",
            "+task.options.judge=alpaca_eval_gpt4", f"+task.options.reference_outputs={reference}", "task.max_new_tokens=2",
            "optim.max_steps=1", "eval.before=false", "eval.max_examples=2", "optim.batch_size=4", f"hydra.run.dir={run}")
    result = json.loads((run / "metrics.json").read_text())["after"]["alpaca_eval"]
    assert result["score"] == pytest.approx(0.856) and result["metric"] == "win_rate"
    assert "| 85.6 ± 0.0 |" in reftrun("table", f"runs={run}").stdout


def test_commonsense_takes_the_first_trigger():
    cs = get_task("commonsense", data_dir=FIXTURES / "commonsense")
    text = "the correct answer is true\nthe correct answer is false"
    assert cs.extract(text, "false") == "true\nthe correct answer is false"
    assert cs.score(cs.extract(text, "false"), "false") is False  # the last trigger would score it right
    assert cs.filter == "strict"


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_tasks_extract_the_scored_number_within_0_001(name):
    task = get_task(name, data_dir=FIXTURES / DATA.get(name, name))
    assert task.filter == "flexible"
    text = "First 2 + 3 = 5, then 5 * 2 = 10.\nThe answer is 10.0004"
    assert task.extract(text, "10") == "10.0004"           # the last number, not the whole generation
    assert task.score(task.extract(text, "10"), "10") is True
    for off in ("10.0011", "10.4", "10.5", "11", "9.2"):   # only |gold − prediction| ≤ 0.001 counts
        assert task.score(task.extract(f"The answer is {off}", "10"), "10") is False, off
    assert task.score(task.extract("The answer is 1,234.", "1234"), "1234") is True
    assert task.extract("no number here", "10") == "" and task.score("", "10") is False


def test_aqua_extracts_the_first_capital_letter():
    math = get_task("arithmetic", data_dir=FIXTURES / "arithmetic")
    text = "We need (B) since 3 > 2. Not C."
    assert math.extract(text, "B") == "B" and math.score("B", "B") is True and math.score("C", "B") is False


def test_alpaca_null_input(tmp_path):
    """HF datasets writes `"input": null` for records without the key: no input by default, pyreft's "None" under
    compat=pyreft (with-input template)."""
    (tmp_path / "alpaca_data_cleaned").mkdir()
    (tmp_path / "alpaca_data_cleaned" / "train.json").write_text(json.dumps(
        [{"instruction": "Say hi.", "input": None, "output": "hi"}, {"instruction": "Add.", "input": "1 2", "output": "3"}]))
    default = get_task("alpaca", data_dir=tmp_path).train_examples()
    pyreft = get_task("alpaca", data_dir=tmp_path, compat="pyreft").train_examples()
    assert "### Input:" not in default[0].prompt and default[0].prompt.startswith("Below is an instruction that describes a task. Write")
    assert pyreft[0].prompt.endswith("### Instruction:\nSay hi.\n\n### Input:\nNone\n\n### Response:\n")
    assert default[1].prompt == pyreft[1].prompt and "### Input:\n1 2\n" in default[1].prompt


def test_prompts_that_fill_max_length_are_counted_and_kept_under_compat(capsys):
    from conftest import byte_tokenizer
    from reftrun.data import encode_train
    from reftrun.tasks import Example
    tok = byte_tokenizer()  # one token per byte
    examples = [Example("a", "x" * 12, "yes", "yes"), Example("b", "abc", "yes", "yes")]
    rows = encode_train(tok, examples, max_length=10)
    assert [r["prompt_length"] for r in rows] == [3]
    assert "skipped 1 training example(s) whose prompt fills max_length=10" in capsys.readouterr().out
    rows = encode_train(tok, examples, max_length=10, keep_full_prompts=True)
    assert [r["prompt_length"] for r in rows] == [10, 3] and rows[0]["labels"] == [-100] * 10
    assert "kept (as pyreft; no target token) 1 training example(s)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="max_length 10 is shorter than every training prompt"):
        encode_train(tok, examples[:1], max_length=10, keep_full_prompts=True)


def test_tiny_model_learns_a_constant_answer_and_the_scores_are_pinned(tmp_path, tiny_model_dir):
    """A task the tiny model learns in 20 steps (always answer 7), so scoring, extraction, generation positions and
    the average are seen with nonzero, known scores: every SVAMP gold is 7 (1.0), half the gsm8k golds are (0.5);
    the unweighted average over sets is 0.75 (weighted by n it would be 5/7)."""
    data = tmp_path / "data"
    (data / "math_10k").mkdir(parents=True)
    (data / "math_10k" / "train.json").write_text(json.dumps(
        [{"instruction": f"Copy this digit: {d}", "output": "7", "answer": "7"} for d in range(10) for _ in range(2)]))
    for name, golds in (("SVAMP", ["7", "7", "7"]), ("gsm8k", ["7", "8", "7", "8"])):
        (data / name).mkdir()
        (data / name / "test.json").write_text(json.dumps(
            [{"instruction": f"Copy this digit: {i}", "output": "", "answer": f"{g}.0"} for i, g in enumerate(golds)]))
    run = tmp_path / "run"
    reftrun("train", "model=hub", "model.dtype=float32", f"model.name_or_path={tiny_model_dir}", "task=arithmetic", f"task.data_dir={data}",
            "eval.sets=[SVAMP,gsm8k]", "task.max_new_tokens=1", "optim.batch_size=4", "optim.max_steps=20",
            "optim.lr=5e-2", "rank=4", f"hydra.run.dir={run}")
    metrics = json.loads((run / "metrics.json").read_text())
    assert [metrics["before"][s]["accuracy"] for s in ("SVAMP", "gsm8k", "average")] == [0.0, 0.0, 0.0]
    assert [metrics["after"][s]["accuracy"] for s in ("SVAMP", "gsm8k")] == [1.0, 0.5]
    assert metrics["after"]["average"]["accuracy"] == pytest.approx(0.75)
    rows = [json.loads(l) for l in (run / "predictions" / "after" / "gsm8k.jsonl").read_text().splitlines()]
    assert [r["extracted"] for r in rows] == ["7"] * 4 and [r["correct"] for r in rows] == [True, False, True, False]


def test_decoding_lengths_and_default_sets_are_the_papers():
    """docs/reference/pyreft_behaviour.md §3.5 and §3.2: 32 / 512 / 256 new tokens; GSM8K is tuned on dev, arithmetic reports four sets."""
    from omegaconf import OmegaConf
    from reftrun.cli import CONF
    new_tokens = lambda n: OmegaConf.load(CONF / "task" / f"{n}.yaml").task.max_new_tokens  # their one home
    assert [new_tokens(n) for n in ("commonsense", "arithmetic", "gsm8k")] == [32, 512, 256]
    assert get_task("gsm8k").default_eval_sets == ("dev",)
    assert get_task("arithmetic").default_eval_sets == ("AQuA", "gsm8k", "mawps", "SVAMP")
    assert new_tokens("alpaca") is None and get_task("alpaca").decoding["max_length"] == 2048
