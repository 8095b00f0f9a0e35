"""Instruction following (paper Table 3): train on Alpaca-52K cleaned (`alpaca`) or UltraFeedback
(`ultrafeedback`); evaluate by answering the 805 AlpacaEval prompts, written as an AlpacaEval model-outputs
JSON (`alpaca_eval_outputs.json`: instruction, output, generator, dataset). These tasks score nothing
themselves: the win rate comes from the `alpaca_eval` judge, and tables show "—" until it is recorded.

Data: `<data_dir>/{alpaca_data_cleaned,ultrafeedback}/train.json` (instruction, input, output) and
`<data_dir>/alpaca_eval/alpaca_eval.json` (the hub's tatsu-lab/alpaca_eval, split eval), written by
scripts/prepare_data.py. Decoding (paper App. D.1): greedy, no-repeat n-gram 5, repetition penalty 1.1,
up to 2048 tokens in all.
"""
from pathlib import Path

from . import Example, Task
from .commonsense import read_json_records
from .templates import alpaca_prompt
from ..runio import write_json


class Instruct(Task):
    name = "alpaca"
    train_dir = "alpaca_data_cleaned"
    eval_sets = ("alpaca_eval",)
    max_new_tokens = None
    decoding = {"max_length": 2048, "no_repeat_ngram_size": 5, "repetition_penalty": 1.1}

    def format(self, record: dict, source: str, index: int = 0) -> Example:
        return Example(id=f"{source}-{index}", prompt=alpaca_prompt(record["instruction"], record.get("input", "")),
                       target=record.get("output", ""), gold="", meta={"instruction": record["instruction"]})

    def train_examples(self) -> list[Example]:
        records = read_json_records(self.data_dir / self.train_dir / "train.json", ("instruction", "output"))
        return [self.format(r, self.train_dir, i) for i, r in enumerate(records)]

    def eval_examples(self, eval_set: str) -> list[Example]:
        records = read_json_records(self.data_dir / "alpaca_eval" / "alpaca_eval.json", ("instruction",))
        return [self.format({"instruction": r["instruction"]}, eval_set, i) for i, r in enumerate(records)]

    def extract(self, generation: str) -> str:
        return generation.lstrip()

    def score(self, extracted: str, gold: str) -> None:
        return None

    def finish(self, run_dir: Path, eval_set: str, rows: list[dict], examples: list[Example], generator: str) -> None:
        outputs = [{"instruction": ex.meta["instruction"], "output": row["extracted"], "generator": generator,
                    "dataset": "alpaca_eval"} for ex, row in zip(examples, rows)]
        write_json(Path(run_dir) / f"{eval_set}_outputs.json", outputs)


class UltraFeedback(Instruct):
    name = "ultrafeedback"
    train_dir = "ultrafeedback"
