"""One battery over every registered intervention: shapes/dtypes, parameter counts, O(r·d) memory,
orthonormality through training, bit-exact save/load, identities, gradients, dropout, error messages.

A new `@register` needs an entry in PARAM_FORMULA and IDENTITY below (the tests fail until it has one)."""
import pytest
import torch

from reftrun.interventions import INTERVENTIONS, build_intervention, count_parameters
from reftrun.orthogonal import OrthonormalRows
from reftrun.reft import Reft, ReftSpec
from reftrun.methods import load_method
from reftrun.methods.reft import ReftMethod

NAMES = sorted(INTERVENTIONS)

# Trainable parameters per intervention (docs/reference/pyreft_behaviour.md §1.3 table).
PARAM_FORMULA = {
    "loreft": lambda d, r: 2 * r * d + r,
    "direft": lambda d, r: 2 * r * d + r,
    "noreft": lambda d, r: 2 * r * d + r,
    "loreft_nodiff": lambda d, r: 2 * r * d + r,
    "consreft": lambda d, r: r * d + r,
    "lobireft": lambda d, r: r * d + r,
}


def make(name, d=16, r=4, dtype=torch.float32, seed=0, **kw):
    torch.manual_seed(seed)
    return build_intervention(name, d, r, dtype=dtype, **kw)


def rot_orthonormality_error(rotation: OrthonormalRows) -> float:
    rt = rotation()  # Rᵀ, d×r
    eye = torch.eye(rt.shape[1], dtype=rt.dtype)
    return (rt.T @ rt - eye).abs().max().item()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(2, 5, 16), (3, 16)])
def test_shape_preserved(name, shape):
    out = make(name)(torch.randn(shape))
    assert out.shape == shape


@pytest.mark.parametrize("name", NAMES)
def test_bf16_input_keeps_dtype_and_fp32_params(name):
    iv = make(name)
    h = torch.randn(2, 5, 16).to(torch.bfloat16)
    out = iv(h)
    assert out.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in iv.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_formula(name):
    assert name in PARAM_FORMULA, f"add the parameter formula of {name!r} to PARAM_FORMULA"
    for d, r in [(16, 4), (32, 1), (64, 8)]:
        assert count_parameters(make(name, d, r)) == PARAM_FORMULA[name](d, r)


@pytest.mark.parametrize("name", NAMES)
def test_memory_is_linear_in_hidden(name):
    d, r = 512, 4
    iv = make(name, d, r)
    total = sum(t.numel() for t in iv.parameters()) + sum(t.numel() for t in iv.buffers())
    assert total <= 4 * r * d + 4 * r  # pyreft keeps a d×d base buffer (262,144 numbers here)


@pytest.mark.parametrize("name", [n for n in NAMES if hasattr(make(n), "rotation")])
def test_rotation_stays_orthonormal_under_training(name):
    iv = make(name, 32, 4)
    assert isinstance(iv.rotation, OrthonormalRows)
    assert rot_orthonormality_error(iv.rotation) < 1e-5
    before = iv.rotation().detach().clone()
    opt = torch.optim.AdamW(iv.parameters(), lr=1e-2)
    h, target = torch.randn(8, 32), torch.randn(8, 32)
    for _ in range(20):
        opt.zero_grad()
        ((iv(h) - target) ** 2).mean().backward()
        opt.step()
    assert rot_orthonormality_error(iv.rotation) < 1e-5
    assert (iv.rotation().detach() - before).abs().max() > 1e-3, "training did not move the rotation"


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_is_bit_exact(name, tmp_path):
    torch.manual_seed(0)
    method = ReftMethod(ReftSpec(intervention=name, rank=4, layers=[0, 1], positions="f2+l2", share_weights=False,
                                 hidden_size=32))
    reft = method.reft
    assert len(reft.interventions) == 4  # 2 layers × (prefix, suffix)
    opt = torch.optim.AdamW(reft.parameters(), lr=1e-2)
    h = torch.randn(3, 5, 32)
    for _ in range(3):
        opt.zero_grad()
        sum((iv(h) ** 2).mean() for iv in reft.interventions.values()).backward()
        opt.step()
    method.save(tmp_path)
    loaded = load_method(tmp_path)
    loaded.load_state_dict(loaded.pending)
    loaded = loaded.reft
    original_state, loaded_state = reft.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for key, value in original_state.items():
        assert torch.equal(value, loaded_state[key]), key
    reft.eval(), loaded.eval()
    for key, iv in reft.interventions.items():
        assert torch.equal(iv(h), loaded.interventions[key](h)), key


def _set_loreft(iv):
    iv.proj.weight.copy_(iv.rotation().T)
    iv.proj.bias.zero_()


def _set_noreft(iv):
    iv.proj.weight.copy_(iv.up.weight)
    iv.proj.bias.zero_()


def _set_loreft_nodiff(iv):
    iv.proj.weight.zero_()
    iv.proj.bias.zero_()


# Weights under which Φ(h) = h (consreft has none: its check is R·Φ(h) = b instead).
IDENTITY = {
    "loreft": _set_loreft,
    "direft": lambda iv: iv.up.weight.zero_(),
    "noreft": _set_noreft,
    "lobireft": lambda iv: iv.bias.zero_(),
    "loreft_nodiff": _set_loreft_nodiff,
    "consreft": None,
}


@pytest.mark.parametrize("name", NAMES)
def test_identity_where_the_math_says_so(name):
    assert name in IDENTITY, f"add an identity (or invariant) check for {name!r} to IDENTITY"
    iv = make(name, 16, 4, dtype=torch.float64).eval()
    h = torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        if name == "consreft":  # projection of the output onto the subspace is the constant b
            projected = iv(h) @ iv.rotation()
            torch.testing.assert_close(projected, iv.bias.expand_as(projected), atol=1e-10, rtol=0)
            assert not torch.allclose(iv(h), h)
            return
        assert not torch.allclose(iv(h), h), "at init the intervention should not be the identity"
        IDENTITY[name](iv)
        torch.testing.assert_close(iv(h), h, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_wrt_input(name):
    iv = make(name, 6, 2, dtype=torch.float64, dropout=0.0)
    h = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(iv, (h,))


@pytest.mark.parametrize("name", NAMES)
def test_dropout_train_vs_eval(name):
    iv = make(name, 16, 4, dropout=0.5)
    h = torch.randn(2, 5, 16)
    iv.eval()
    eval_out = iv(h)
    assert torch.equal(eval_out, iv(h)), "eval mode must be deterministic"
    iv.train()
    torch.manual_seed(1)
    train_out = iv(h)
    if type(iv).uses_dropout:
        assert not torch.equal(train_out, eval_out)
    else:  # consreft: no dropout even when asked for
        assert name == "consreft"
        assert torch.equal(train_out, eval_out)


def test_unknown_intervention_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_intervention("no_such_reft", 8, 2)
    assert "no_such_reft" in str(err.value)
    assert all(name in str(err.value) for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_act_fn_lists_valid_choices(name):
    with pytest.raises(ValueError) as err:
        build_intervention(name, 8, 2, act_fn="swishy")
    message = str(err.value)
    assert "swishy" in message
    assert all(act in message for act in ("linear", "relu", "gelu", "tanh", "silu"))


def explicit(name, iv, h):
    """Each Φ(h) written out from its parameters (docs/reference/pyreft_behaviour.md §1.3), bias terms included."""
    rot = iv.rotation() if hasattr(iv, "rotation") else None
    lin = (h @ iv.proj.weight.T + iv.proj.bias) if hasattr(iv, "proj") else None
    return {"loreft": lambda: h + (lin - h @ rot) @ rot.T,
            "direft": lambda: h + lin @ iv.up.weight,
            "noreft": lambda: h + (lin - h @ iv.up.weight.T) @ iv.up.weight,
            "consreft": lambda: h + (iv.bias - h @ rot) @ rot.T,
            "lobireft": lambda: h + iv.bias @ rot.T,
            "loreft_nodiff": lambda: h + lin @ rot.T}[name]()


@pytest.mark.parametrize("name", NAMES)
def test_output_equals_the_written_out_formula(name):
    iv = make(name).eval()
    with torch.no_grad():
        for p in iv.parameters():
            p.add_(torch.randn_like(p))  # biases far from zero: dropping one changes the output
        h = torch.randn(2, 3, 16)
        torch.testing.assert_close(iv(h), explicit(name, iv, h), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d,r", [(16, 4), (9, 9), (576, 8)])
def test_orthonormal_rows_equal_torch_householder_and_ormqr(d, r):
    """The compact-WY products equal torch's householder_product and ormqr (the map pyreft's parametrisation
    uses), in value and in gradient, away from the chart's centre; reset_base(M) makes forward() return M."""
    torch.manual_seed(0)
    rows = OrthonormalRows(d, r)
    with torch.no_grad():
        rows.original.normal_(0, 0.3)
    weights = torch.randn(d, r)
    (rows() * weights).sum().backward()
    ours, our_grad = rows().detach(), rows.original.grad.clone()

    original = rows.original.detach().clone().requires_grad_(True)
    reflectors = original.tril(-1)
    chart = -torch.linalg.householder_product(reflectors, 2.0 / (1.0 + (reflectors * reflectors).sum(dim=0)))
    chart = torch.cat([chart[:r] * rows.base_signs[:, None], chart[r:]])
    theirs = torch.ormqr(rows.base_reflectors, rows.base_tau, chart)
    (theirs * weights).sum().backward()
    assert torch.allclose(ours, theirs.detach(), atol=1e-5)
    assert torch.allclose(our_grad, original.grad, atol=1e-4)

    matrix = torch.linalg.qr(torch.randn(d, r))[0]
    rows.reset_base(matrix)
    assert torch.allclose(rows().detach(), matrix, atol=1e-5)
    rows.reset_base(torch.eye(d, r))  # geqrf gives τ = 0 (no reflection) for columns already on the axes
    assert torch.equal(rows().detach().abs(), torch.eye(d, r))
