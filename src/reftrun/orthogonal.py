"""A rank×hidden matrix R with orthonormal rows, kept orthonormal through training in O(rank·hidden) memory.

The map is pyreft's (torch's householder orthogonal parametrisation with a trivialisation chart
centred on the initial matrix), but the fixed d×d base is stored as r Householder reflectors
(`geqrf` of the initial matrix) instead of a dense d×d buffer: 2·r·d numbers instead of d².
"""
import torch
from torch import nn


def _householder_chart(original: torch.Tensor) -> torch.Tensor:
    """Columns 1..r of the product of Householder reflectors read off `original`'s strict lower part.

    Equals [I_r; 0] when the strict lower part is zero (the chart's centre)."""
    reflectors = original.tril(-1)
    tau = 2.0 / (1.0 + (reflectors * reflectors).sum(dim=0))
    return -torch.linalg.householder_product(reflectors, tau)


class OrthonormalRows(nn.Module):
    """Holds R ∈ ℝ^{r×d}; `forward()` returns Rᵀ (d×r, orthonormal columns)."""

    def __init__(self, hidden_size: int, rank: int, dtype: torch.dtype = torch.float32):
        """`dtype` is the output's; the factorisation runs in float32 at least (geqrf/ormqr need it), as pyreft
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
        return torch.ormqr(self.base_reflectors, self.base_tau, chart).to(self.out_dtype)
