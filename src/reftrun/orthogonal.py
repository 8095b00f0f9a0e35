"""A rank×hidden matrix R with orthonormal rows, kept orthonormal through training in O(rank·hidden) memory.

The map is pyreft's (torch's householder orthogonal parametrisation with a trivialisation chart
centred on the initial matrix), but the fixed d×d base is stored as r Householder reflectors
(`geqrf` of the initial matrix) instead of a dense d×d buffer: 2·r·d numbers instead of d².

Both products of reflectors (the chart's and the base's) are applied in compact-WY form, H₁⋯H_r = I − V T Vᵀ
with T⁻¹ = diag(1/τ) + strict-upper(VᵀV) (Schreiber and Van Loan; Joffrain et al. 2006): a few matrix
products instead of torch's householder_product and ormqr, whose backward runs column by column in many small
ops (LinalgHouseholderProductBackward0 was 9% of a float32 SmolLM2 training step on a 2-core AVX512 Xeon, torch.profiler through
`scripts/bench.py --profile`; README, Speed, has the step before and after).
"""
import torch
from torch import nn


def _reflect(v: torch.Tensor, tau_inverse: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(H₁ H₂ ⋯ H_r) x for unit-lower reflectors v (d×r), given T⁻¹ (r×r, upper triangular)."""
    return x - v @ torch.linalg.solve_triangular(tau_inverse, v.mT @ x, upper=True)


def _unit_lower(reflectors: torch.Tensor) -> torch.Tensor:
    return reflectors.tril(-1) + torch.eye(*reflectors.shape, dtype=reflectors.dtype, device=reflectors.device)


def _householder_chart(original: torch.Tensor) -> torch.Tensor:
    """Columns 1..r of the product of Householder reflectors read off `original`'s strict lower part
    (τ = 2/vᵀv: true reflections), negated. Equals −[I_r; 0] when the strict lower part is zero."""
    v = _unit_lower(original)
    gram = v.mT @ v
    tau_inverse = gram.triu(1) + torch.diag_embed(gram.diagonal() / 2)
    return _reflect(v, tau_inverse, -torch.eye(*v.shape, dtype=v.dtype, device=v.device))


class OrthonormalRows(nn.Module):
    """Holds R ∈ ℝ^{r×d}; `forward()` returns Rᵀ (d×r, orthonormal columns)."""

    def __init__(self, hidden_size: int, rank: int, dtype: torch.dtype = torch.float32):
        """`dtype` is the output's; the factorisation runs in float32 at least (geqrf needs it), as pyreft
        keeps its R in float32 beside bfloat16 W."""
        super().__init__()
        self.out_dtype = dtype
        dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        if not 0 < rank <= hidden_size:
            raise ValueError(f"rank {rank} must be in 1..hidden_size={hidden_size}")
        initial = torch.empty(hidden_size, rank, dtype=dtype)
        nn.init.orthogonal_(initial)
        # Trainable chart coordinates; only the strict lower triangle is used (d·r entries, as pyreft counts).
        self.original = nn.Parameter(torch.zeros(hidden_size, rank, dtype=dtype))
        self.register_buffer("base_reflectors", torch.empty(hidden_size, rank, dtype=dtype))
        self.register_buffer("base_tau", torch.empty(rank, dtype=dtype))
        self.register_buffer("base_signs", torch.empty(rank, dtype=dtype))
        self.reset_base(initial)

    @torch.no_grad()
    def reset_base(self, matrix: torch.Tensor) -> None:
        """Re-centre the chart on `matrix` (d×r, orthonormal columns): afterwards forward() == matrix."""
        reflectors, tau = torch.geqrf(matrix.to(self.original.dtype))
        self.base_reflectors.copy_(reflectors)
        self.base_tau.copy_(tau)
        self.base_signs.copy_(torch.sign(reflectors.diagonal()))  # geqrf's R is diag(±1) for orthonormal input
        self.original.zero_()

    def forward(self) -> torch.Tensor:
        chart = _householder_chart(self.original)
        rank = chart.shape[1]
        chart = torch.cat([chart[:rank] * self.base_signs[:, None], chart[rank:]])
        with torch.no_grad():  # the base's Q = H₁⋯H_r (geqrf's reflectors and τ), as ormqr applies it
            v = _unit_lower(self.base_reflectors)
            tau_inverse = (v.mT @ v).triu(1) + torch.diag(1 / self.base_tau)
        return _reflect(v, tau_inverse, chart).to(self.out_dtype)
