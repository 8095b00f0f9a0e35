"""GSM8K, the paper's tuning task: train on the GSM8K train set less its last 300 examples, which form the dev
set the hyperparameters were tuned on; evaluate on `dev` or `test` (docs/reference/pyreft_behaviour.md §3.2–3.3).

Data: `<data_dir>/gsm8k_main/{train,test}.jsonl` (rows {"question", "answer"}, as the hub's openai/gsm8k config
"main"), written by scripts/prepare_data.py. Prompt: the question, then "Answer the above question. First think
step by step and then answer the final number."; target: the answer with "####" replaced by "The final answer
is: " (the double space is the reference's). Score: the last number of the generation within 0.001 of the gold.
"""
from . import Example, Task
from .arithmetic import is_number, last_number, number_text
from .files import read_jsonl

INSTRUCTION = "Answer the above question. First think step by step and then answer the final number."
DEV_SIZE = 300


def gold_answer(answer: str) -> str:
    """The number after the last '####' of a GSM8K answer."""
    return number_text(last_number(answer.split("####")[-1]))


class GSM8K(Task):
    name = "gsm8k"
    eval_sets = ("dev", "test")
    default_eval_sets = ("dev",)

    def format(self, row: dict, source: str, index: int = 0) -> Example:
        return Example(id=f"gsm8k-{source}-{index}", prompt=f"{row['question']}\n{INSTRUCTION}\n",
                       target=row["answer"].replace("####", "The final answer is: "), gold=gold_answer(row["answer"]))

    def _train_rows(self) -> list[dict]:
        return read_jsonl(self.data_dir / "gsm8k_main" / "train.jsonl", ("question", "answer"), "gsm8k")

    def train_examples(self) -> list[Example]:
        rows = self._train_rows()
        # tuning protocol: hold out the last 300; `task.options.full_train=true` trains on all for test runs
        keep = rows if self.options.get("full_train") else rows[:-DEV_SIZE]
        return [self.format(r, "train", i) for i, r in enumerate(keep)]

    def eval_examples(self, eval_set: str) -> list[Example]:
        if eval_set == "dev":
            rows = self._train_rows()
            return [self.format(r, "dev", len(rows) - DEV_SIZE + i) for i, r in enumerate(rows[-DEV_SIZE:])]
        rows = read_jsonl(self.data_dir / "gsm8k_main" / "test.jsonl", ("question", "answer"), "gsm8k")
        return [self.format(r, "test", i) for i, r in enumerate(rows)]

    filter = "flexible"  # the last number of the generation

    def extract(self, generation: str, gold: str = "") -> str:
        return number_text(last_number(generation))

    def score(self, extracted: str, gold: str) -> bool:
        return is_number(extracted) and abs(float(gold) - float(extracted)) <= 1e-3
