r"""Singular-value density of ``W`` without an eigensolve: stochastic Lanczos quadrature (issue 10, item 3).

Symbols:

* ``W`` of shape ``(N, d)``, ``n = min(N, d)`` singular values :math:`s_1 \ge \dots \ge s_n`;
  :math:`A` the smaller Gram matrix (:math:`W^\top W` when ``d <= N``, else :math:`W W^\top`), of size
  ``n`` and eigenvalues :math:`\lambda_i = s_i^2`.
* The empirical spectral distribution (ESD) :math:`\mu = \frac1n \sum_i \delta_{s_i}`; its CDF
  :math:`F(t) = \#\{i: s_i \le t\}/n`.
* ``p`` probes :math:`z_l` (Gaussian, normalised), ``m`` Lanczos steps; :math:`T_l` the ``m x m`` Lanczos
  tridiagonal of :math:`A` from :math:`z_l`, with eigenpairs :math:`(\theta_{lj}, y_{lj})`.
* ``k`` exact top values :math:`s_1..s_k` (e.g. from the spectral tracker) with their right vectors
  :math:`V_k \in \mathbb R^{d \times k}`.

Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; the review of Lin, Saad & Yang 2016): for a unit
vector :math:`z` uniform on the sphere, :math:`\mathbb E\, z^\top f(A) z = \frac1n \operatorname{tr} f(A)`,
and ``m`` Lanczos steps from :math:`z` give the ``m``-point Gauss quadrature of the measure
:math:`\sum_i \langle z, q_i\rangle^2 \delta_{\lambda_i}`, exact for polynomials of degree ``2m - 1``:

.. math:: \frac1n \sum_{i=1}^n f(s_i) \approx \frac1p \sum_{l=1}^p \sum_{j=1}^m
          \tau_{lj}^2\, f\bigl(\sqrt{\theta_{lj}}\bigr), \qquad \tau_{lj} = e_1^\top y_{lj}.

Each Lanczos step is one product ``W (W^T X)`` with the ``(n, p)`` block of all probes' current vectors
(each probe runs its own three-term recurrence; the products are shared), so the cost is ``2m`` thin products
(one fused pass over ``W`` per step on the CPU, two on CUDA) for any ``p`` up to the GEMM's compute-bound width. Products run in ``W``'s dtype (TF32 off on CUDA);
the Lanczos vectors, coefficients and the tridiagonal eigensolves are float64. No reorthogonalisation
against older vectors is needed for quadrature (Ritz values that reappear after a loss of orthogonality split
their weight, Knizhnerman 1996); a breakdown (:math:`\beta_j \le 100\,\varepsilon\, \|T\|`, an invariant
subspace reached) ends that probe's recurrence, whose quadrature is then exact.

Deflation of the exact top values. With their right vectors, the probes and every Lanczos vector are
projected onto the complement of :math:`V_k` (of :math:`U_k = W V_k \operatorname{diag}(s)^{-1}` when
``N < d``), so SLQ sees only the other ``n - k`` eigenvalues (unbiased for Gaussian probes):

.. math:: \hat\mu = \frac1n \sum_{i \le k} \delta_{s_i} + \frac{n-k}{n}\, \frac1p \sum_{l,j}
          \tau_{lj}^2\, \delta_{\sqrt{\theta_{lj}}} \quad (\text{Lanczos on } P A P,\ P = I - V_k V_k^\top).

The outliers are exact atoms (an exact count in any histogram bin) and no bulk mass leaks above them.
Without vectors the quadrature mass at or above :math:`s_k` is dropped and the rest rescaled to ``n - k``
(approximate just below :math:`s_k`, where the dropped nodes also carried some bulk mass).

From the quadrature a continuous CDF is built per probe by spreading each node's weight uniformly over its
cell between the midpoints to its neighbours (the end cells extend by half the adjacent gap, not below 0):
the Chebyshev–Markov–Stieltjes inequalities place the true CDF at a node between the quadrature's
cumulative weights before and after it, and the cell midpoint halves that gap. Histograms and the CDF use
these cells; :meth:`SpectralDensity.density` broadens the nodes with a Gaussian.

Error (tests/test_density.py): the statistical part is the variance of :math:`z^\top 1\{A \le t^2\} z`,
:math:`2F(1-F)/(n+2)` per probe, so the CDF error is :math:`\sqrt{2/(np)}` times the sup of a Brownian bridge
(typically :math:`0.87\sqrt{2/(np)}`: 0.0068 at ``n = 4096``, ``p = 8``); the quadrature part is the CDF's
smoothing over a cell (measured with the exact ESD as the probe measure, ``n = 2048``: 0.0063 at ``m = 16``,
0.0043 at ``m = 20``, 0.0096 at ``m = 12``, worst of MP c = 0.5, 1, 2, a rank-3 spike and a two-point
covariance). Cost: ``2m`` thin products; the defaults (``p = 8``, ``m = 16``) took 7.6 % of one GD step
at ``N = d = n = 4096`` on one CPU core, 10.2 % on two (``scripts/bench_density.py``, BENCHMARKS.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from spikelearn.functional._measure import tf32_off

__all__ = ["SpectralDensity", "singular_value_density"]

_MIN_WEIGHT = 1e-14  # quadrature weights below this are padding (after a breakdown) or round-off
# Added to the probe seed: probes drawn with the user's seed would coincide with a W drawn from the same
# seed (torch.randn(N, d, generator=manual_seed(0)) has z = first row), whose spectral measure is then
# weighted by s^2 instead of uniform.
_PROBE_SEED_SALT = 0x5EED_DE45_17E5


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation through ``(xp, fp)`` (``xp`` increasing), constant outside."""
    idx = torch.searchsorted(xp, x).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    width = x1 - x0
    u = torch.where(width > 0, (x - x0) / torch.where(width > 0, width, torch.ones_like(width)), torch.ones_like(x))
    out = f0 + u.clamp(0.0, 1.0) * (f1 - f0)
    out = torch.where(x <= xp[0], fp[0], out)
    return torch.where(x >= xp[-1], fp[-1], out)


class SpectralDensity(NamedTuple):
    """Stochastic-Lanczos-quadrature estimate of the singular-value distribution of ``W``.

    The spectrum it describes has ``size = min(N, d)`` values: the ``k`` exact ``top_values`` and
    ``size - k`` bulk values represented by the quadrature ``(nodes, weights)`` of each probe.

    Attributes:
        nodes: bulk quadrature nodes as singular values (``sqrt`` of the Ritz values, clamped at 0),
            float64, shape ``(p, m)``, ascending in each row.
        weights: their weights, float64, shape ``(p, m)``, each row summing to 1 (zero for padding).
        top_values: exact top singular values used as atoms, float64, shape ``(k,)``, descending (may be empty).
        size: ``min(N, d)``, the number of singular values.
        products: products with ``W`` or ``Wᵀ`` spent (each on a block of ``p`` columns).
    """

    nodes: Tensor
    weights: Tensor
    top_values: Tensor
    size: int
    products: int

    @property
    def bulk_size(self) -> int:
        """Number of singular values represented by the quadrature, ``size - len(top_values)``."""
        return self.size - self.top_values.numel()

    def representative_values(self, grid_size: int = 4096) -> Tensor:
        r"""``min(N, d)`` values distributed like the estimate, descending: the exact top values, then the bulk's
        mid-quantiles :math:`F_{bulk}^{-1}((i - 1/2)/(n - k))` (for drawing a histogram of the whole spectrum).

        Args:
            grid_size: points of the CDF grid the bulk quantiles are interpolated from.

        Returns:
            float64 tensor of shape ``(min(N, d),)``.
        """
        upper = float(self.nodes.max()) if self.nodes.numel() else 0.0
        if self.top_values.numel():
            upper = max(upper, float(self.top_values[-1]))
        grid = torch.linspace(0.0, max(upper, 1e-300) * 1.01, grid_size, dtype=torch.float64, device=self.nodes.device)
        F = torch.cummax(self._bulk_cdf(grid), 0).values
        levels = (torch.arange(self.bulk_size, dtype=torch.float64, device=grid.device) + 0.5) / max(self.bulk_size, 1)
        bulk = _interp(levels, F + torch.arange(grid_size, device=grid.device) * 1e-15, grid)
        return torch.cat([self.top_values, bulk.flip(0)])

    def _cells(self) -> list[tuple[Tensor, Tensor]]:
        # per probe: cell boundaries b (increasing) and cumulative weight at them (0 ... 1)
        cells = []
        for s, w in zip(self.nodes, self.weights):
            keep = w > _MIN_WEIGHT
            s, w = s[keep], w[keep] / w[keep].sum()
            if s.numel() == 1:
                b = torch.stack([s[0], s[0]])
            else:
                mid = 0.5 * (s[1:] + s[:-1])
                lo = (s[0] - 0.5 * (s[1] - s[0])).clamp_min(0.0)
                hi = s[-1] + 0.5 * (s[-1] - s[-2])
                if self.top_values.numel():  # bulk mass stays below the smallest exact top value
                    hi = torch.minimum(hi, torch.maximum(self.top_values[-1], s[-1]))
                b = torch.cat([lo.reshape(1), mid, hi.reshape(1)])
            cum = torch.cat([w.new_zeros(1), w.cumsum(0)])
            cum[-1] = 1.0
            cells.append((b, cum))
        return cells

    def _bulk_cdf(self, t: Tensor) -> Tensor:
        out = torch.zeros_like(t)
        for b, cum in self._cells():
            if b[0] == b[-1]:
                out += (t >= b[0]).to(t.dtype)
            else:
                out += _interp(t, b, cum)
        return out / self.nodes.shape[0]

    def _points(self, name: str, points: Tensor | list[float] | tuple[float, ...]) -> Tensor:
        t = torch.as_tensor(points, dtype=torch.float64, device=self.nodes.device)
        if t.ndim != 1 or not torch.isfinite(t).all():
            raise ValueError(f"`{name}` must be a 1-D sequence of finite numbers, got shape {tuple(t.shape)}.")
        return t

    def cdf(self, points: Tensor | list[float] | tuple[float, ...]) -> Tensor:
        r"""Estimated :math:`F(t) = \#\{i: s_i \le t\}/n` at the given singular-value levels.

        Args:
            points: levels ``t``, shape ``(q,)``.

        Returns:
            float64 tensor of shape ``(q,)`` with values in ``[0, 1]``, non-decreasing in ``t``.
        """
        t = self._points("points", points)
        top = (self.top_values[None, :] <= t[:, None]).sum(1).to(torch.float64)
        return (top + self.bulk_size * self._bulk_cdf(t)) / self.size

    def histogram(
        self, edges: Tensor | list[float] | tuple[float, ...], *, integer: bool = False, fold_outside: bool = True
    ) -> Tensor:
        r"""Expected number of singular values in each bin ``[edges[b], edges[b+1])``.

        The exact top values are counted exactly (each adds 1 to its bin); the bulk adds
        ``(n - k) (F_bulk(edges[b+1]) - F_bulk(edges[b]))``.

        Args:
            edges: increasing bin edges in singular-value units, shape ``(B + 1,)``, ``B >= 1``.
            integer: round to integers by largest remainders, keeping the total.
            fold_outside: count mass below ``edges[0]`` in the first bin and above ``edges[-1]`` in the last,
                so that the counts sum to ``min(N, d)`` (``False``: drop it).

        Returns:
            float64 tensor of shape ``(B,)``.

        Raises:
            ValueError: if ``edges`` has fewer than two entries or is not strictly increasing.
        """
        e = self._points("edges", edges)
        if e.numel() < 2 or not bool((e[1:] > e[:-1]).all()):
            raise ValueError(f"`edges` must be strictly increasing with at least 2 entries, got {e.tolist()!r}.")
        F = self._bulk_cdf(e)  # (B + 1,)
        if fold_outside:
            F[0], F[-1] = 0.0, 1.0
        counts = self.bulk_size * (F[1:] - F[:-1])
        top = self.top_values
        if top.numel():
            idx = torch.searchsorted(e, top, right=True) - 1  # bin b holds edges[b] <= s < edges[b + 1]
            idx = torch.where(top == e[-1], torch.full_like(idx, e.numel() - 2), idx)
            if fold_outside:
                idx = idx.clamp(0, e.numel() - 2)
            inside = (idx >= 0) & (idx <= e.numel() - 2)
            counts = counts.index_add(0, idx[inside], torch.ones_like(top[inside]))
        if integer:
            floor = counts.floor()
            missing = int(round(float(counts.sum() - floor.sum())))
            order = torch.argsort(counts - floor, descending=True)
            floor[order[:missing]] += 1.0
            counts = floor
        return counts

    def density(self, grid: Tensor | list[float] | tuple[float, ...], bandwidth: float | None = None) -> Tensor:
        r"""Gaussian-broadened density of the singular values on a grid (integrates to 1 over the line).

        .. math:: \hat\rho(x) = \frac1n \Bigl[\sum_{i\le k} \varphi_h(x - s_i) + (n-k)\frac1p \sum_{l,j}
                  \tau_{lj}^2\, \varphi_h\bigl(x - \sqrt{\theta_{lj}}\bigr)\Bigr],
                  \qquad \varphi_h = \mathcal N(0, h^2).

        Args:
            grid: points ``x``, shape ``(q,)``.
            bandwidth: ``h``; default the median gap between consecutive bulk nodes of a probe (about the
                quadrature's own resolution).

        Returns:
            float64 tensor of shape ``(q,)``.

        Raises:
            ValueError: if ``bandwidth`` is not positive.
        """
        x = self._points("grid", grid)
        if bandwidth is None:
            gaps = [b[1:] - b[:-1] for b, _ in self._cells()]
            gaps = torch.cat(gaps)
            gaps = gaps[gaps > 0]
            h = float(gaps.median()) if gaps.numel() else 1.0
        else:
            h = float(bandwidth)
            if not (math.isfinite(h) and h > 0.0):
                raise ValueError(f"`bandwidth` must be a positive number, got {bandwidth!r}.")
        kernel = lambda centres: torch.exp(-0.5 * ((x[:, None] - centres[None, :]) / h) ** 2) / (  # noqa: E731
            h * math.sqrt(2.0 * math.pi)
        )
        bulk = (kernel(self.nodes.reshape(-1)) * self.weights.reshape(-1)[None, :]).sum(1) / self.nodes.shape[0]
        top = kernel(self.top_values).sum(1) if self.top_values.numel() else torch.zeros_like(x)
        return (top + self.bulk_size * bulk) / self.size

    def trace(self, fn: Callable[[Tensor], Tensor]) -> float:
        r"""Estimate of :math:`\sum_{i=1}^n f(s_i)` by the Gauss quadrature (exact top values exactly).

        Args:
            fn: elementwise function of a float64 tensor of singular values.

        Example:
            >>> W = 2.0 * torch.eye(3, dtype=torch.float64)  # the Krylov space breaks down after one step
            >>> singular_value_density(W, num_probes=4).trace(torch.square)
            12.0
        """
        bulk = float((fn(self.nodes) * self.weights).sum()) / self.nodes.shape[0]
        top = float(fn(self.top_values).sum()) if self.top_values.numel() else 0.0
        return top + self.bulk_size * bulk


_ROW_BLOCK = 256  # rows of M per fused block on the CPU (256 x 4096 float32 = 4 MiB)


def _gram_rows(M: Tensor, X: Tensor) -> Tensor:
    """``X Mᵀ M`` for ``X`` of shape ``(p, n)``: two passes over ``M`` on CUDA, one fused pass on the CPU.

    On the CPU, ``Σ_b (X M_bᵀ) M_b`` over row blocks reads each block of ``M`` from memory once and the second
    time from cache (the saving is measured in BENCHMARKS.md).
    """
    if M.device.type != "cpu" or not M.is_contiguous() or M.shape[0] <= _ROW_BLOCK:
        return (X @ M.T) @ M
    Y = torch.zeros_like(X)
    for block in M.split(_ROW_BLOCK):  # (rows_b, n)
        Y.addmm_(X @ block.T, block)
    return Y


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _deflation(W: Tensor, top_values: Tensor | None, top_vectors: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The checked top values (float64, descending) and an orthonormal basis ``(n, k)`` of their vectors on the side
    of the smaller Gram (``None`` without ``top_vectors``), for :func:`singular_value_density`."""
    N, d = W.shape
    n = min(N, d)
    dev = W.device
    top = torch.zeros(0, dtype=torch.float64, device=dev)
    Q: Tensor | None = None  # (n, k) orthonormal basis to project out
    if top_values is not None:
        top = torch.as_tensor(top_values).to(device=dev, dtype=torch.float64).reshape(-1)
        if top.numel() >= n:
            raise ValueError(f"`top_values` must have fewer than min(N, d) = {n} entries, got {top.numel()}.")
        if not bool(torch.isfinite(top).all()) or bool((top < 0).any()):
            raise ValueError("`top_values` must be finite and non-negative.")
        top = top.sort(descending=True).values
    if top_vectors is not None:
        if top_values is None:
            raise ValueError("`top_vectors` needs `top_values` (their singular values).")
        V = torch.as_tensor(top_vectors)
        if V.ndim != 2 or V.shape != (d, top.numel()):
            raise ValueError(
                f"`top_vectors` must have shape (d, k) = ({d}, {top.numel()}), got {tuple(V.shape)}."
            )
        V = V.to(device=dev, dtype=torch.float64)
        if not bool(torch.isfinite(V).all()):
            raise ValueError("`top_vectors` has NaN or Inf entries.")
        if top.numel():
            if d <= N:
                basis = V  # right vectors live on the Gram side
            else:  # left vectors U = W V / s (one thin product), for the N x N Gram
                if bool((top <= 0).any()):
                    raise ValueError("`top_values` must be positive to deflate left vectors when N < d.")
                with tf32_off(dev):
                    basis = (W @ V.to(W.dtype)).to(torch.float64) / top[None, :]
            Q = torch.linalg.qr(basis)[0]  # (n, k)
    return top, Q


def singular_value_density(
    W: Tensor,
    *,
    num_probes: int = 8,
    lanczos_steps: int = 16,
    top_values: Tensor | None = None,
    top_vectors: Tensor | None = None,
    seed: int = 0,
) -> SpectralDensity:
    r"""Density of the ``min(N, d)`` singular values of ``W`` by stochastic Lanczos quadrature.

    ``2 * lanczos_steps`` products with ``W`` (or ``Wᵀ``) on a ``(n, num_probes)`` block; no eigensolve of an
    ``n x n`` matrix. See the module docstring for the formula, the deflation and the error.

    Args:
        W: matrix, shape ``(N, d)``, float32 or float64, on any device (the work runs there).
        num_probes: ``p``, Gaussian probe vectors (statistical CDF error about :math:`(2np)^{-1/2}`).
        lanczos_steps: ``m``, Lanczos steps per probe (quadrature nodes per probe); capped at the bulk's size.
        top_values: exact top singular values ``s_1..s_k``, shape ``(k,)``, ``k < min(N, d)``; they become
            exact atoms and the quadrature describes only the other ``n - k`` values.
        top_vectors: their right singular vectors, shape ``(d, k)`` (orthonormal columns); projected out of
            the probes (exact deflation). Without them the quadrature's mass at and above ``min(top_values)``
            is replaced by the atoms. Requires ``top_values``.
        seed: seed of the probes (drawn on the CPU in float64, so the same on every device; salted, so a ``W``
            drawn from the same seed does not contain them).

    Returns:
        :class:`SpectralDensity` with ``histogram(edges)``, ``cdf(points)``, ``density(grid)`` and ``trace(fn)``.

    Raises:
        ValueError: on a non-2-D, non-float or non-finite ``W``, a non-positive ``num_probes`` or
            ``lanczos_steps``, or ``top_values`` / ``top_vectors`` of the wrong shape or values.

    Example:
        >>> W = torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0], dtype=torch.float64))
        >>> V = torch.eye(4, 1, dtype=torch.float64)  # right vector of the top value 3
        >>> rho = singular_value_density(W, top_values=torch.tensor([3.0]), top_vectors=V)
        >>> rho.histogram([0.0, 2.0, 4.0]).tolist(), rho.cdf([0.5, 2.0, 3.0]).tolist()
        ([3.0, 1.0], [0.0, 0.75, 1.0])
    """
    if not isinstance(W, Tensor):
        raise ValueError(f"`W` must be a torch.Tensor, got {type(W).__name__}.")
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"`W` must be 2-D of shape (N, d) with N, d >= 1, got shape {tuple(W.shape)}.")
    if W.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"`W` must be float32 or float64, got {W.dtype} (cast a bf16/fp16 weight first).")
    num_probes = _check_count("num_probes", num_probes)
    lanczos_steps = _check_count("lanczos_steps", lanczos_steps)
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    N, d = W.shape
    n = min(N, d)
    dev = W.device
    M = W if d <= N else W.T  # (rows, n): A = Mᵀ M is the smaller Gram
    top, Q = _deflation(W, top_values, top_vectors)  # (k,), (n, k) orthonormal or None

    k = top.numel()
    steps = min(lanczos_steps, n - k if Q is not None else n)
    gen = torch.Generator().manual_seed((int(seed) + _PROBE_SEED_SALT) % 2**63)
    # Lanczos vectors as rows: X (p, n) times Mᵀ then M is a row-block GEMM, several times faster on CPU
    # than M @ (n, p) followed by Mᵀ @ (rows, p) for p <= 16 (measured at n = 4096)
    x = torch.randn(num_probes, n, generator=gen, dtype=torch.float64).to(dev)  # (p, n)
    if Q is not None:
        for _ in range(2):
            x = x - (x @ Q) @ Q.T
    x = x / x.norm(dim=1, keepdim=True)
    x_prev = torch.zeros_like(x)
    beta_prev = torch.zeros(num_probes, 1, dtype=torch.float64, device=dev)
    active = torch.ones(num_probes, 1, dtype=torch.bool, device=dev)
    alphas, betas = [], []
    scale = torch.zeros((), dtype=torch.float64, device=dev)
    eps = torch.finfo(W.dtype).eps
    products = 0
    with tf32_off(dev), torch.no_grad():
        for j in range(steps):
            y = _gram_rows(M, x.to(W.dtype)).to(torch.float64)  # (p, n): rows of A x
            products += 2
            if Q is not None:
                y = y - (y @ Q) @ Q.T
            alpha = (x * y).sum(1, keepdim=True)  # (p, 1)
            r = y - alpha * x - beta_prev * x_prev
            r = r - x * (x * r).sum(1, keepdim=True)  # local reorthogonalisation against the current vector
            beta = r.norm(dim=1, keepdim=True)
            alphas.append(torch.where(active, alpha, torch.zeros_like(alpha))[:, 0])
            if j == steps - 1:
                break
            scale = torch.maximum(scale, (alpha.abs() + beta + beta_prev).max())
            active = active & (beta > 100.0 * eps * scale)  # breakdown: invariant subspace reached
            beta = torch.where(active, beta, torch.zeros_like(beta))
            betas.append(beta[:, 0])
            x_prev, x = x, torch.where(active, r / torch.where(active, beta, torch.ones_like(beta)), 0.0)
            beta_prev = beta
        m = len(alphas)
        diag = torch.stack(alphas, 1)  # (p, m)
        off = torch.stack(betas, 1) if m > 1 else diag[:, :0]  # (p, m - 1)
        # a NaN/Inf entry of W reaches every coefficient through the first product (one sync, no extra pass)
        if not bool(torch.isfinite(diag).all() & torch.isfinite(off).all()):
            raise ValueError("`W` has NaN or Inf entries (or overflows): the Lanczos coefficients are not finite.")
        T = torch.diag_embed(diag)  # (p, m, m)
        if m > 1:
            T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        theta, Y = torch.linalg.eigh(T)  # ascending
        weights = Y[:, 0, :] ** 2  # (p, m)
    weights = weights / weights.sum(1, keepdim=True)
    nodes = theta.clamp_min(0.0).sqrt()
    if top_values is not None and Q is None and k:
        # no vectors: replace the quadrature's mass at and above the smallest top value by the atoms
        cut = top[-1]
        weights = torch.where(nodes < cut * (1.0 - 1e-9), weights, torch.zeros_like(weights))
        total = weights.sum(1, keepdim=True)
        if bool((total <= 0).any()):
            raise ValueError("`top_values` cover the whole quadrature of some probe; pass `top_vectors`.")
        weights = weights / total
    return SpectralDensity(nodes, weights, top, n, products)
