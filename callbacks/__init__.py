"""Lightning callbacks of spikelearn, installed as ``spikelearn.callbacks``.

* :class:`SpectrumMonitor`: the spectral film of a run (TensorBoard scalars, histograms, figures and
  ``spectra.jsonl``), computed by :class:`spikelearn.functional.engine.SpectralTracker`.
* :class:`Cadence`: which steps a callback acts on (the monitor's ``analyses``, ``histograms`` and ``figures``).
* :class:`WeightSnapshot`: ``W_t`` (with ``a``, ``B``, ``t``, ``η_t``) as safetensors files.
* :class:`RunSummary`: the end of a fit — result table, TensorBoard custom-scalars layout, HPARAMS metrics.
* :class:`StepProgressBar`: a rich progress bar over the steps ``t/T`` with ``η_t`` and the outlier count.
* :class:`TwoLayerTheory`: what a user's own two-layer module provides to get the theory's fields.
* :func:`read_records`, :func:`load_snapshots`, :func:`load_snapshot`: read them back offline.
"""

from ._cadence import Cadence
from ._common import TwoLayerTheory
from ._io import Snapshot, load_snapshot, load_snapshots, read_records
from .progress import StepProgressBar
from .snapshot import WeightSnapshot
from .spectrum import RECORD_FILENAME, SpectrumMonitor, record_scalars
from .summary import RunSummary, custom_scalars_layout, final_metrics, summary_table

__all__ = [
    "RECORD_FILENAME",
    "Cadence",
    "RunSummary",
    "Snapshot",
    "SpectrumMonitor",
    "StepProgressBar",
    "TwoLayerTheory",
    "WeightSnapshot",
    "custom_scalars_layout",
    "final_metrics",
    "load_snapshot",
    "load_snapshots",
    "read_records",
    "record_scalars",
    "summary_table",
]
