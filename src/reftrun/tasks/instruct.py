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
from .files import read_json_records
from .templates import alpaca_prompt


class Instruct(Task):
    name = "alpaca"
    metric = "win_rate"
    train_dir = "alpaca_data_cleaned"
    eval_sets = ("alpaca_eval",)
    decoding = {"max_length": 2048, "no_repeat_ngram_size": 5, "repetition_penalty": 1.1}

    def format(self, record: dict, source: str, index: int = 0) -> Example:
        """`"input": null` (HF datasets writes it when some records lack the key) means no input; compat=pyreft
        follows pyreft, which takes the with-input template and inserts the text "None"."""
        text = record.get("input", "")
        if text is None:
            text = "None" if self.options.get("compat") == "pyreft" else ""
        return Example(id=f"{source}-{index}", prompt=alpaca_prompt(record["instruction"], text),
                       target=record.get("output", ""), gold="", meta={"instruction": record["instruction"]})

    def train_examples(self) -> list[Example]:
        records = read_json_records(self.data_dir / self.train_dir / "train.json", ("instruction", "output"))
        return [self.format(r, self.train_dir, i) for i, r in enumerate(records)]

    def eval_examples(self, eval_set: str) -> list[Example]:
        records = read_json_records(self.data_dir / "alpaca_eval" / "alpaca_eval.json", ("instruction",))
        return [self.format({"instruction": r["instruction"]}, eval_set, i) for i, r in enumerate(records)]

    def extract(self, generation: str, gold: str = "") -> str:
        return generation.lstrip()

    def score(self, extracted: str, gold: str) -> None:
        return None

    def outputs(self, eval_set: str, rows: list[dict], examples: list[Example], generator: str) -> dict:
        """The judge's input: an AlpacaEval model-outputs file."""
        return {f"{eval_set}_outputs.json": [{"instruction": ex.meta["instruction"], "output": row["extracted"],
                                              "generator": generator, "dataset": "alpaca_eval"}
                                             for ex, row in zip(examples, rows)]}

    def judge(self, files: dict[str, Path], work_dir: Path, generator: str) -> dict:
        """When `task.options.judge` (an alpaca_eval annotators config, the paper's is alpaca_eval_gpt4) and
        `reference_outputs` (text-davinci-003's outputs for v1.0) are set, run the judge: its win rate is the score."""
        judge, reference = self.options.get("judge"), self.options.get("reference_outputs")
        if not judge or not reference:
            return {}
        (path,) = files.values()
        return {"score": win_rate(path, judge, reference, Path(work_dir), generator), "metric": "win_rate"}


def win_rate(outputs: Path, judge: str, reference: str, out_dir: Path, generator: str) -> float | None:
    """Run the alpaca_eval CLI (AlpacaEval 1.0 settings) and read the win rate (0-1) from its leaderboard."""
    import csv
    import os
    import shutil
    import subprocess
    if shutil.which("alpaca_eval") is None:
        print("[reftrun] alpaca_eval is not installed (pip install alpaca-eval): win rate not computed")
        return None
    command = ["alpaca_eval", "--model_outputs", str(outputs), "--reference_outputs", str(reference),
               "--annotators_config", judge, "--output_path", str(out_dir)]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "IS_ALPACA_EVAL_2": "False"})
    boards = sorted(out_dir.rglob("leaderboard.csv"))
    if proc.returncode != 0 or not boards:
        print(f"[reftrun] alpaca_eval failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        return None
    for row in csv.DictReader(boards[-1].open()):
        if generator in row.values() or len(row) and next(iter(row.values())) == generator:
            return float(row["win_rate"]) / 100
    return None


class UltraFeedback(Instruct):
    name = "ultrafeedback"
    train_dir = "ultrafeedback"
