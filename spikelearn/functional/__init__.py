"""The mathematics of spikelearn: pure tensor functions (torch, numpy, scipy only; no Lightning).

Each formula of ``SPEC.md`` lives in exactly one module here, with the equation in its docstring:
``hermite`` (Hermite polynomials, Gaussian quadrature), ``activations`` (σ, σ', μ_k), ``targets`` (links,
directions, IE and p*), ``model`` (network, gradient, step, readout), ``schedule`` (η_t = c_t N^{α_t}),
``rmt`` (Marchenko–Pastur, BBP, Benaych-Georges–Nadakuditi, Tracy–Widom), ``spectral`` (top-k singular
triplets, bulk edge, outliers, alignments, order-k decomposition, the snapshot analysis) and ``theory``
(predicted outlier counts, learnable directions).
"""

from spikelearn.functional import activations as _activations
from spikelearn.functional import density as _density
from spikelearn.functional import hermite as _hermite
from spikelearn.functional import model as _model
from spikelearn.functional import rmt as _rmt
from spikelearn.functional import schedule as _schedule
from spikelearn.functional import spectral as _spectral
from spikelearn.functional import targets as _targets
from spikelearn.functional import theory as _theory
from spikelearn.functional.activations import *  # noqa: F403
from spikelearn.functional.density import *  # noqa: F403
from spikelearn.functional.hermite import *  # noqa: F403
from spikelearn.functional.model import *  # noqa: F403
from spikelearn.functional.rmt import *  # noqa: F403
from spikelearn.functional.schedule import *  # noqa: F403
from spikelearn.functional.spectral import *  # noqa: F403
from spikelearn.functional.targets import *  # noqa: F403
from spikelearn.functional.theory import *  # noqa: F403

__all__ = [
    *_activations.__all__,
    *_density.__all__,
    *_hermite.__all__,
    *_model.__all__,
    *_rmt.__all__,
    *_schedule.__all__,
    *_spectral.__all__,
    *_targets.__all__,
    *_theory.__all__,
]
