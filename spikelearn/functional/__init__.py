"""The mathematics of spikelearn: pure tensor functions (torch, numpy, scipy only; no Lightning).

Each formula of ``SPEC.md`` lives in exactly one module here, with the equation in its docstring:
``hermite`` (Hermite polynomials, Gaussian quadrature), ``activations`` (σ, σ', μ_k), ``targets`` (links,
directions, IE and p*), ``model`` (network, gradient, step, readout), ``schedule`` (η_t = c_t N^{α_t}),
``rmt`` (Marchenko–Pastur, BBP, Benaych-Georges–Nadakuditi, Tracy–Widom), ``theory`` (predicted outlier
counts, learnable directions), and the spectral engine: ``krylov`` (the one block Krylov loop), ``spectral`` (top-k
singular triplets, full spectrum), ``outliers`` (edge fit and outlier rules), ``inputs`` (engine config, state and
theory inputs), ``spectrum`` / ``regularity`` / ``two_layer`` / ``alignment`` (the engine's stages), ``identity``
(spike ids across steps), ``engine`` (the composer and the tracker) and ``record`` (the record's keys and tags).
"""

from spikelearn.functional import activations as _activations
from spikelearn.functional import alignment as _alignment
from spikelearn.functional import density as _density
from spikelearn.functional import engine as _engine
from spikelearn.functional import hermite as _hermite
from spikelearn.functional import identity as _identity
from spikelearn.functional import inputs as _inputs
from spikelearn.functional import krylov as _krylov
from spikelearn.functional import model as _model
from spikelearn.functional import outliers as _outliers
from spikelearn.functional import record as _record
from spikelearn.functional import regularity as _regularity
from spikelearn.functional import rmt as _rmt
from spikelearn.functional import schedule as _schedule
from spikelearn.functional import spectral as _spectral
from spikelearn.functional import spectrum as _spectrum
from spikelearn.functional import targets as _targets
from spikelearn.functional import theory as _theory
from spikelearn.functional import two_layer as _two_layer
from spikelearn.functional.activations import *  # noqa: F403
from spikelearn.functional.alignment import *  # noqa: F403
from spikelearn.functional.density import *  # noqa: F403
from spikelearn.functional.engine import *  # noqa: F403
from spikelearn.functional.hermite import *  # noqa: F403
from spikelearn.functional.identity import *  # noqa: F403
from spikelearn.functional.inputs import *  # noqa: F403
from spikelearn.functional.krylov import *  # noqa: F403
from spikelearn.functional.model import *  # noqa: F403
from spikelearn.functional.outliers import *  # noqa: F403
from spikelearn.functional.record import *  # noqa: F403
from spikelearn.functional.regularity import *  # noqa: F403
from spikelearn.functional.rmt import *  # noqa: F403
from spikelearn.functional.schedule import *  # noqa: F403
from spikelearn.functional.spectral import *  # noqa: F403
from spikelearn.functional.spectrum import *  # noqa: F403
from spikelearn.functional.targets import *  # noqa: F403
from spikelearn.functional.theory import *  # noqa: F403
from spikelearn.functional.two_layer import *  # noqa: F403

__all__ = [
    *_activations.__all__,
    *_alignment.__all__,
    *_density.__all__,
    *_engine.__all__,
    *_hermite.__all__,
    *_identity.__all__,
    *_inputs.__all__,
    *_krylov.__all__,
    *_model.__all__,
    *_outliers.__all__,
    *_record.__all__,
    *_regularity.__all__,
    *_rmt.__all__,
    *_schedule.__all__,
    *_spectral.__all__,
    *_spectrum.__all__,
    *_targets.__all__,
    *_theory.__all__,
    *_two_layer.__all__,
]
