"""What each kind of task trains and scores: encoding, collation, the target count, the loss and the evaluation.

`objective_for(task)` picks one by the task's declared `kind`; the loop and the evaluation only call it.
"""
from .data import encode_classify, encode_prompts, encode_train
from .evaluate import classify_set, generate_set
from .loss import classification_loss, target_loss


class Generate:
    """Prompt → target text: cross-entropy on the target tokens; scored by generating, extracting, comparing."""
    num_labels = None
    score_set = staticmethod(generate_set)

    def __init__(self, task, compat: str = "paper"):
        self.task, self.compat = task, compat

    def encode(self, tok, examples, max_length: int) -> list[dict]:
        return encode_train(tok, examples, max_length, keep_full_prompts=self.compat == "pyreft")

    def check_eval_prompts(self, tok, examples, max_length: int) -> None:
        encode_prompts(tok, examples, max_length)  # a prompt too long fails now, not after training

    def collate(self, collator, rows: list[dict]) -> dict:
        return collator.train(rows)

    def targets(self, rows: list[dict]) -> int:
        return sum(l != -100 for r in rows for l in r["labels"])

    def loss(self, model, batch: dict):
        return target_loss(model, batch)


class Classify(Generate):
    """Input → a label from a trained head: cross-entropy per row (squared error for regression)."""
    score_set = staticmethod(classify_set)

    def __init__(self, task, compat: str = "paper"):
        super().__init__(task, compat)
        self.num_labels, self.regression = task.num_labels, task.num_labels == 1

    def encode(self, tok, examples, max_length: int) -> list[dict]:
        return encode_classify(tok, examples, max_length)

    def check_eval_prompts(self, tok, examples, max_length: int) -> None:
        pass  # inputs are truncated to max_length, as the paper's GLUE runs do

    def collate(self, collator, rows: list[dict]) -> dict:
        return collator.classify(rows, self.regression)

    def targets(self, rows: list[dict]) -> int:
        return len(rows)

    def loss(self, model, batch: dict):
        return classification_loss(model, batch, self.regression)


OBJECTIVES = {"generate": Generate, "classify": Classify}


def objective_for(task, compat: str = "paper"):
    return OBJECTIVES[task.kind](task, compat)
