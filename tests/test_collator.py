"""reftrun.data.Collator and train_batches on hand-built rows, against expectations worked out by hand:
padding side, labels, attention masks, intervention positions (offsets, clipping, groups, sink token),
label dtypes, and the batch order."""
import pytest
import torch

from reftrun.data import Collator, train_batches
from reftrun.reft import ReftSpec

PAD = 99  # not a token id used below, so padding is visible in every expectation


def spec(positions="f2+l2", share_weights=True, sink_token=False, pyreft_clipping=False) -> ReftSpec:
    return ReftSpec(intervention="loreft", rank=2, layers=[0], positions=positions, share_weights=share_weights,
                    hidden_size=8, sink_token=sink_token, pyreft_clipping=pyreft_clipping)


# A 4-token prompt with a 2-token target, and a 2-token prompt with a 1-token target.
ROWS = [{"input_ids": [10, 11, 12, 13, 14, 15], "labels": [-100, -100, -100, -100, 14, 15], "prompt_length": 4},
        {"input_ids": [20, 21, 22], "labels": [-100, -100, 22], "prompt_length": 2}]


def as_lists(batch):
    return {k: v.tolist() for k, v in batch.items()}


def test_train_pads_right_and_masks_prompt_and_padding_in_the_labels():
    batch = as_lists(Collator(PAD, spec()).train(ROWS))
    assert batch["input_ids"] == [[10, 11, 12, 13, 14, 15], [20, 21, 22, PAD, PAD, PAD]]
    assert batch["attention_mask"] == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert batch["labels"] == [[-100, -100, -100, -100, 14, 15], [-100, -100, 22, -100, -100, -100]]
    # f2+l2 tied: one group of 4 slots. Row 0 (n=4): 0,1 and 2,3. Row 1 (n=2 < 4): clipped to f1+l1 → 0 and 1,
    # the unused slots masked (their index is 0, never read).
    assert batch["positions"] == [[[0, 1, 2, 3]], [[0, 0, 1, 0]]]
    assert batch["position_mask"] == [[[True, True, True, True]], [[True, False, True, False]]]


def test_train_tensors_have_the_dtypes_the_model_and_hooks_expect():
    batch = Collator(PAD, spec()).train(ROWS)
    assert {k: v.dtype for k, v in batch.items()} == {"input_ids": torch.long, "attention_mask": torch.long,
                                                      "labels": torch.long, "positions": torch.long,
                                                      "position_mask": torch.bool}


def test_untied_weights_give_a_prefix_and_a_suffix_group():
    batch = as_lists(Collator(PAD, spec(share_weights=False)).train(ROWS))
    assert batch["positions"] == [[[0, 1], [2, 3]], [[0, 0], [1, 0]]]             # [B, G=2, P=2]
    assert batch["position_mask"] == [[[True, True], [True, True]], [[True, False], [True, False]]]
    one_sided = Collator(PAD, spec(positions="f3", share_weights=False)).train(ROWS)
    assert one_sided["positions"].tolist() == [[[0, 1, 2]], [[0, 0, 0]]]          # one group even when untied
    # n=2 < 3: one-sided specs are clipped too, p ← min(3, ⌊2/2⌋) = 1
    assert one_sided["position_mask"].tolist() == [[[True, True, True]], [[True, False, False]]]


def test_prompts_pad_left_and_shift_positions_by_each_rows_pad_count():
    batch = as_lists(Collator(PAD, spec()).prompts([[5, 6, 7, 8, 9], [5, 6]]))
    assert batch["input_ids"] == [[5, 6, 7, 8, 9], [PAD, PAD, PAD, 5, 6]]
    assert batch["attention_mask"] == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    assert "labels" not in batch
    # Row 0 (n=5, no pad): 0,1 and 3,4. Row 1 (n=2, 3 pads): clipped to f1+l1 → 0 and 1, shifted by 3.
    assert batch["positions"] == [[[0, 1, 3, 4]], [[3, 0, 4, 0]]]
    assert batch["position_mask"] == [[[True, True, True, True]], [[True, False, True, False]]]


@pytest.mark.parametrize("share_weights", [True, False])
def test_left_and_right_padding_edit_the_same_prompt_tokens(share_weights):
    """Whatever the padding, the edited tokens are the prompt's first p and last s tokens."""
    prompts = [[30, 31, 32, 33, 34, 35, 36], [40, 41, 42], [50]]
    collator = Collator(PAD, spec(share_weights=share_weights))
    left = collator.prompts(prompts)
    right = collator.train([{"input_ids": p + [7], "labels": [-100] * len(p) + [7], "prompt_length": len(p)}
                            for p in prompts])
    for batch in (left, right):
        edited = [[[batch["input_ids"][b, i].item() for i, ok in zip(g, m) if ok]
                   for g, m in zip(batch["positions"][b].tolist(), batch["position_mask"][b].tolist())]
                  for b in range(len(prompts))]
        if share_weights:
            assert edited == [[[30, 31, 35, 36]], [[40, 41, 42]], [[50]]]
        else:
            assert edited == [[[30, 31], [35, 36]], [[40], [41, 42]], [[], [50]]]


@pytest.mark.parametrize("n,paper,pyreft", [
    # n ≥ p+s: no clipping under the paper's rule; pyreft still caps both sides at ⌊n/2⌋
    (8, [0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 4, 5, 6, 7]),
    # odd n < p+s: p ← min(p, ⌊n/2⌋), s ← min(s, ⌈n/2⌉); pyreft ⌊n/2⌋ for both
    (5, [0, 1, 2, 3, 4], [0, 1, 3, 4]),
    (1, [0], []),
])
def test_short_prompt_clipping_paper_and_pyreft(n, paper, pyreft):
    prompt = [list(range(100, 100 + n))]
    for clipping, expected in ((False, paper), (True, pyreft)):
        batch = Collator(PAD, spec(positions="f3+l5", pyreft_clipping=clipping)).prompts(prompt)
        assert batch["positions"].shape == (1, 1, 8)
        assert batch["positions"][0, 0][batch["position_mask"][0, 0]].tolist() == expected, clipping
        assert batch["position_mask"].sum().item() == len(expected)


def test_sink_token_prepends_one_masked_pad_and_shifts_positions_by_one():
    collator = Collator(PAD, spec(sink_token=True))
    train = as_lists(collator.train(ROWS))
    assert train["input_ids"] == [[PAD, 10, 11, 12, 13, 14, 15], [PAD, 20, 21, 22, PAD, PAD, PAD]]
    assert train["attention_mask"] == [[0, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0, 0]]
    assert train["labels"] == [[-100, -100, -100, -100, -100, 14, 15], [-100, -100, -100, 22, -100, -100, -100]]
    assert train["positions"] == [[[1, 2, 3, 4]], [[1, 0, 2, 0]]]
    assert train["position_mask"] == [[[True, True, True, True]], [[True, False, True, False]]]
    prompts = as_lists(collator.prompts([[5, 6, 7, 8, 9], [5, 6]]))
    assert prompts["input_ids"] == [[PAD, 5, 6, 7, 8, 9], [PAD, PAD, PAD, PAD, 5, 6]]
    assert prompts["attention_mask"] == [[0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]]
    assert prompts["positions"] == [[[1, 2, 4, 5]], [[4, 0, 5, 0]]]


@pytest.mark.parametrize("regression,labels,dtype", [(False, [1, 0], torch.long), (True, [0.5, 3.25], torch.float)])
def test_classify_has_one_label_per_row_long_or_float(regression, labels, dtype):
    rows = [{"input_ids": [1, 2, 3], "label": labels[0], "prompt_length": 3},
            {"input_ids": [4, 5], "label": labels[1], "prompt_length": 2}]
    batch = Collator(PAD, spec(positions="f1", share_weights=False)).classify(rows, regression=regression)
    assert batch["labels"].dtype == dtype and batch["labels"].tolist() == labels
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 5, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["positions"].tolist() == [[[0]], [[0]]] and batch["position_mask"].all()


def length_rows(n=23):
    return [{"id": i, "input_ids": [1] * (i + 1)} for i in range(n)]  # distinct lengths 1..n


@pytest.mark.parametrize("group_by_length", [True, False])
def test_train_batches_cover_every_row_once_per_epoch(group_by_length):
    rows = length_rows()
    for epoch in range(3):
        batches = train_batches(rows, 4, seed=1, epoch=epoch, group_by_length=group_by_length)
        assert sorted(len(b) for b in batches) == [3, 4, 4, 4, 4, 4]
        ids = [r["id"] for b in batches for r in b]
        assert sorted(ids) == list(range(len(rows)))


@pytest.mark.parametrize("group_by_length", [True, False])
def test_train_batches_are_deterministic_per_seed_and_epoch(group_by_length):
    rows = length_rows()

    def order(seed, epoch):
        return [[r["id"] for r in b] for b in train_batches(rows, 4, seed=seed, epoch=epoch, group_by_length=group_by_length)]

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1) and order(1, 0) != order(2, 0)
    assert order(1, 0) != [list(range(s, min(s + 4, 23))) for s in range(0, 23, 4)]  # shuffled, not the file order


def test_grouping_by_length_puts_similar_lengths_together_in_a_shuffled_order():
    rows = length_rows()
    batches = train_batches(rows, 4, seed=1, epoch=0, group_by_length=True)
    lengths = [[len(r["input_ids"]) for r in b] for b in batches]
    # All 23 rows fall in one window of 50 batches: sorted by length, cut into batches, the batches shuffled.
    assert sorted(lengths) == [list(range(s + 1, min(s + 4, 23) + 1)) for s in range(0, 23, 4)]
    assert lengths != sorted(lengths)
    ungrouped = train_batches(rows, 4, seed=1, epoch=0, group_by_length=False)
    assert [len(b) for b in ungrouped] == [4, 4, 4, 4, 4, 3]  # no second shuffle: the short batch is last
