"""Positions: the f<p>+l<s> parser, clipping, groups, padded batches, layer lists, the paper's
parameter counts, and edit_positions (only valid selected tokens change; padding side is irrelevant)."""
import pytest
import torch

from reftrun.interventions import build_intervention
from reftrun.positions import PositionSpec, batch_positions
from reftrun.reft import Reft, ReftSpec, edit_positions, parse_layers


@pytest.mark.parametrize("text, expected", [("f7+l7", (7, 7)), ("f3", (3, 0)), ("l1", (0, 1)), ("f1+l1", (1, 1))])
def test_parse_good(text, expected):
    spec = PositionSpec.parse(text)
    assert (spec.first, spec.last) == expected
    assert PositionSpec.parse(str(spec)) == spec  # str() round-trips


@pytest.mark.parametrize("text", ["f7+", "x3", "f-1", "", "f0", "l0", "7", "l1+f1", "f1l1", "f 1"])
def test_parse_bad(text):
    with pytest.raises(ValueError) as err:
        PositionSpec.parse(text)
    assert text in str(err.value) and "valid" in str(err.value)


def test_prompt_positions_long_prompt():
    spec = PositionSpec.parse("f7+l7")
    assert spec.prompt_positions(20, share_weights=True) == [list(range(7)) + list(range(13, 20))]
    assert spec.prompt_positions(20, share_weights=False) == [list(range(7)), list(range(13, 20))]


def test_prompt_positions_short_prompt_paper_clipping():
    # paper: p <- min(p, floor(n/2)), s <- min(s, ceil(n/2))
    prefix, suffix = PositionSpec.parse("f7+l7").prompt_positions(5, share_weights=False)
    assert prefix == [0, 1] + [-1] * 5
    assert suffix == [2, 3, 4] + [-1] * 4


def test_prompt_positions_short_prompt_pyreft_clipping():
    # pyreft's code floors both sides (docs/reference/pyreft_behaviour.md §2.3)
    prefix, suffix = PositionSpec.parse("f7+l7").prompt_positions(5, share_weights=False, pyreft_clipping=True)
    assert prefix == [0, 1] + [-1] * 5
    assert suffix == [3, 4] + [-1] * 5


def test_prompt_positions_pyreft_verified_tied_example():
    # docs/reference/pyreft_behaviour.md §2.3: n=10, f7+l7 tied -> 0..9 then four -1 pads. Within one tied group the
    # slot order is irrelevant (one shared intervention, pads masked), so compare as multisets.
    (tied,) = PositionSpec.parse("f7+l7").prompt_positions(10, share_weights=True)
    assert len(tied) == 14
    assert sorted(p for p in tied if p >= 0) == list(range(10))
    assert tied.count(-1) == 4


def test_prompt_positions_pyreft_verified_untied_example():
    # docs/reference/pyreft_behaviour.md §2.3: n=10 untied -> prefix [0..4, -1, -1], suffix [5..9, -1, -1]
    assert PositionSpec.parse("f7+l7").prompt_positions(10, share_weights=False) == [
        [0, 1, 2, 3, 4, -1, -1], [5, 6, 7, 8, 9, -1, -1]]


@pytest.mark.parametrize("text, n, pyreft, paper", [
    # the paper (§4.1) clips only when n < p+s; pyreft's code clips both sides to ⌊n/2⌋ always
    ("f3+l5", 8, [[0, 1, 2], [4, 5, 6, 7]], [[0, 1, 2], [3, 4, 5, 6, 7]]),
    ("f11", 6, [[0, 1, 2]], [[0, 1, 2]]),              # one-sided: ⌊n/2⌋, not n (QNLI/QQP presets)
    ("l4", 3, [[2]], [[1, 2]]),                        # one-sided suffix: ⌈n/2⌉ in the paper
    ("l4", 5, [[3, 4]], [[1, 2, 3, 4]]),               # n ≥ p+s: the paper keeps all s
    ("f3", 2, [[0]], [[0]]),
    ("f2+l2", 4, [[0, 1], [2, 3]], [[0, 1], [2, 3]]),  # n = p+s: nothing clipped either way
    ("f2+l3", 3, [[0], [2]], [[0], [1, 2]]),           # odd n < p+s: ⌊3/2⌋ and ⌈3/2⌉
])
def test_prompt_positions_clipping_rules(text, n, pyreft, paper):
    spec = PositionSpec.parse(text)
    for clipped, expected in ((True, pyreft), (False, paper)):
        groups = spec.prompt_positions(n, share_weights=False, pyreft_clipping=clipped)
        assert [[p for p in g if p >= 0] for g in groups] == expected
        assert [len(g) for g in groups] == spec.slots(False)  # unused slots are -1 pads


@pytest.mark.parametrize("text, share, groups", [
    ("f7+l7", True, ["all"]), ("f3", False, ["all"]), ("l2", False, ["all"]), ("f7+l7", False, ["prefix", "suffix"])])
def test_groups(text, share, groups):
    assert PositionSpec.parse(text).groups(share) == groups


@pytest.mark.parametrize("text, share", [("f2+l2", False), ("f2+l2", True), ("l3", False)])
def test_batch_positions_left_vs_right_padding(text, share):
    spec, lengths = PositionSpec.parse(text), [6, 3, 1]
    pads = [max(lengths) - n for n in lengths]
    right_pos, right_mask = batch_positions(spec, share, lengths, offsets=[0, 0, 0])
    left_pos, left_mask = batch_positions(spec, share, lengths, offsets=pads)
    assert right_pos.shape == right_mask.shape == (3, len(spec.groups(share)), max(spec.slots(share)))
    assert torch.equal(right_mask, left_mask)
    offsets = torch.tensor(pads)[:, None, None].expand_as(right_pos)
    assert torch.equal((left_pos - right_pos)[left_mask], offsets[left_mask])
    assert right_mask[2].sum() == 1  # a 1-token prompt still gets its one token edited


@pytest.mark.parametrize("layers, expected", [("all", [0, 1, 2, 3]), ("0;2", [0, 2]), ("1-2", [1, 2]), ([3, 1], [1, 3])])
def test_parse_layers_good(layers, expected):
    assert parse_layers(layers, 4) == expected


@pytest.mark.parametrize("layers", ["5", "", "a;b", "-1", "2-9"])
def test_parse_layers_bad(layers):
    with pytest.raises(ValueError) as err:
        parse_layers(layers, 4)
    assert "layers" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("layers, hidden, rank, positions, share, expected", [
    (list(range(32)), 4096, 8, "f7+l7", True, 2_097_408),  # LLaMA-7B, Table 1 (docs/reference/pyreft_behaviour.md §7.10, docs/reference/paper_results.md §6.2)
    (list(range(40)), 5120, 8, "f7+l7", True, 3_277_120),  # LLaMA-13B (same sources)
    ([3, 9, 18, 24], 4096, 4, "f5+l5", False, 262_176),    # Llama-2 7B UltraFeedback, untied: 8 interventions
    (list(range(12)), 768, 1, "f3", False, 18_444),         # RoBERTa-base GLUE, one-sided: 1 group per layer
    (list(range(24)), 1024, 1, "f3", False, 49_176),        # RoBERTa-large GLUE
])
def test_paper_parameter_counts(layers, hidden, rank, positions, share, expected):
    reft = Reft(ReftSpec("loreft", rank=rank, layers=layers, positions=positions, share_weights=share,
                         hidden_size=hidden))
    assert reft.num_parameters() == expected


def steering(d=8, r=2):
    torch.manual_seed(0)
    iv = build_intervention("lobireft", d, r, dtype=torch.float64)
    with torch.no_grad():
        iv.bias.fill_(1.0)
    return iv


def test_edit_positions_changes_only_valid_selected_tokens():
    iv = steering()
    hidden = torch.randn(2, 6, 8, dtype=torch.float64)
    positions = torch.tensor([[0, 2, 5], [3, 0, 0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])  # row0 pos5 and row1 pos0 selected but masked
    out = edit_positions(hidden, positions, mask, iv)
    changed = {(0, 0), (0, 2), (1, 3)}
    for b in range(2):
        for t in range(6):
            if (b, t) in changed:
                assert not torch.equal(out[b, t], hidden[b, t])
                torch.testing.assert_close(out[b, t], iv(hidden[b, t]), atol=1e-12, rtol=0)
            else:
                assert torch.equal(out[b, t], hidden[b, t]), (b, t)


@pytest.mark.parametrize("text, share", [("f2+l2", False), ("f2+l2", True), ("f3", False)])
def test_edit_positions_same_under_left_and_right_padding(text, share):
    torch.manual_seed(0)
    spec, d, lengths = PositionSpec.parse(text), 8, [6, 3]
    ivs = [build_intervention("loreft", d, 2, dtype=torch.float64) for _ in spec.groups(share)]
    rows = [torch.randn(n, d, dtype=torch.float64) for n in lengths]
    width, pads = max(lengths), [max(lengths) - n for n in lengths]
    right = torch.randn(2, width, d, dtype=torch.float64)  # pad slots hold junk
    left = torch.randn(2, width, d, dtype=torch.float64)
    for b, row in enumerate(rows):
        right[b, :lengths[b]] = row
        left[b, pads[b]:] = row

    def edit(hidden, offsets):
        positions, mask = batch_positions(spec, share, lengths, offsets)
        for g, iv in enumerate(ivs):
            hidden = edit_positions(hidden, positions[:, g], mask[:, g], iv)
        return hidden

    with torch.no_grad():
        edited_right, edited_left = edit(right, [0, 0]), edit(left, pads)
    for b, n in enumerate(lengths):
        assert not torch.equal(edited_right[b, :n], rows[b]), "something should have been edited"
        torch.testing.assert_close(edited_right[b, :n], edited_left[b, pads[b]:], atol=1e-12, rtol=0)
