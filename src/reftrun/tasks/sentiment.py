"""The embedded default: the polarity of English words rated by people, from the VADER sentiment lexicon.

VADER (Hutto & Gilbert, ICWSM 2014; MIT licence) ships in the `vaderSentiment` package as vader_lexicon.txt:
each entry is a token, the mean of ten raters' valence scores on -4..+4, their standard deviation and the
ten ratings. We keep the plain lowercase words whose mean is clearly positive or negative (|mean| ≥ 1),
leave out profanity and slurs so that printed examples stay fit for a demo, and ask for the polarity in the
paper's commonsense format ("Answer format: positive/negative", target "the correct answer is <label>"),
scored by the same strict exact match. A fixed shuffle gives a held-out set disjoint from training, the same
for every run seed. SmolLM2-135M's hidden states hold this (a linear probe on layer 20: 0.90 on 200 held-out
words against a majority rate of 0.54; docs/default_task.md), so a minute of ReFT learns the task, not only the
answer format.
"""
import importlib.util
import random
import re
from functools import lru_cache
from pathlib import Path

from . import Example
from .commonsense import Commonsense

THRESHOLD = 1.0  # |mean rating| at or above which a word counts as clearly positive or negative
UNFIT = re.compile(r"fuck|shit|cunt|twat|nigg|fag|whore|slut|bitch|bastard|dick|cock|pussy|piss|asshole|"
                   r"douche|wank|tard|rape|damn|crap|^(ass|wtf|ffs|fu|sob|hell|dx|kia|afu|fubar)$")
NEGATIVE_AFFIX = re.compile(r"^(un|dis|in|im|mis|non)|less$")


def lexicon_path() -> Path:
    spec = importlib.util.find_spec("vaderSentiment")
    if spec is None:
        raise RuntimeError("the default task needs the vaderSentiment package: pip install --no-deps vaderSentiment==3.3.2")
    return Path(spec.submodule_search_locations[0]) / "vader_lexicon.txt"


@lru_cache(maxsize=2)
def read_lexicon(path: Path) -> tuple[tuple[str, float], ...]:
    """(word, mean rating) for the plain, printable, clearly polar words of the lexicon, in file order; read once
    per process (the task asks for its splits before the model loads and at each evaluation)."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word, mean = line.split("\t")[:2]
        if re.fullmatch(r"[a-z]+", word) and abs(float(mean)) >= THRESHOLD and not UNFIT.search(word):
            words.append((word, float(mean)))
    return tuple(words)


def to_record(word: str, mean: float) -> dict:
    return {"instruction": f"Please answer the following question with positive or negative, question: is the word "
                           f"\"{word}\" positive or negative?\n\nAnswer format: positive/negative",
            "answer": "positive" if mean > 0 else "negative"}


class WordSentiment(Commonsense):
    name = "sentiment_offline"
    eval_sets = ("vader_words",)

    def _split(self) -> tuple[list[Example], list[Example]]:
        examples = []
        for i, (word, mean) in enumerate(read_lexicon(lexicon_path())):
            examples.append(self.format(to_record(word, mean), "vader", i))
            examples[-1].meta = {"word": word, "mean": mean}
        random.Random(self.seed).shuffle(examples)  # fixed split seed, independent of the run's seed
        n_eval, n_train = int(self.options.get("eval_size", 300)), int(self.options.get("train_size", 480))
        return examples[:n_eval], examples[n_eval:n_eval + n_train]

    def train_examples(self) -> list[Example]:
        return self._split()[1]

    def eval_examples(self, eval_set: str) -> list[Example]:
        return self._split()[0]

    def baselines(self, eval_set: str, examples: list[Example]) -> dict:
        """Chance is 1/2; the best surface cue we know for word polarity is a negative affix."""
        hits = [("negative" if NEGATIVE_AFFIX.search(ex.meta["word"]) else "positive") == ex.gold for ex in examples]
        return {"chance": 0.5, "cue": {"rule": "negative when the word starts with un/dis/in/im/mis/non or ends in "
                                               "-less, else positive", "accuracy": sum(hits) / len(hits)}}
