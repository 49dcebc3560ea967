"""spikelearn: feature learning as spectra.

Train ``f(x) = a·σ(Wx)/√N`` with a few large full-batch gradient steps and watch the
first-layer weights ``W_t`` become a spiked random matrix. See ``../shared/SPEC.md``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
