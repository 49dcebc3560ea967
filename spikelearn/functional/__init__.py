"""The mathematics of spikelearn: pure tensor functions (torch, numpy, scipy only; no Lightning).

Each formula of ``SPEC.md`` lives in exactly one module here, with the equation in its docstring:
``hermite`` (Hermite polynomials, Gaussian quadrature), ``activations`` (σ, σ', μ_k), ``targets`` (links,
directions, IE and p*), ``model`` (network, gradient, step, readout), ``schedule`` (η_t = c_t N^{α_t}).
"""

from spikelearn.functional import activations as _activations
from spikelearn.functional import hermite as _hermite
from spikelearn.functional import model as _model
from spikelearn.functional import schedule as _schedule
from spikelearn.functional import targets as _targets
from spikelearn.functional.activations import *  # noqa: F403
from spikelearn.functional.hermite import *  # noqa: F403
from spikelearn.functional.model import *  # noqa: F403
from spikelearn.functional.schedule import *  # noqa: F403
from spikelearn.functional.targets import *  # noqa: F403

__all__ = [
    *_activations.__all__,
    *_hermite.__all__,
    *_model.__all__,
    *_schedule.__all__,
    *_targets.__all__,
]
