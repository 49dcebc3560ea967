"""Lightning callbacks of spikelearn, installed as ``spikelearn.callbacks``.

* :class:`SpectrumMonitor`: the spectral film of a run (TensorBoard scalars, histograms, figures and
  ``spectra.jsonl``), computed by :func:`spikelearn.functional.spectral.analyze_snapshot`.
* :class:`WeightSnapshot`: ``W_t`` (with ``a``, ``B``, ``t``, ``η_t``) as safetensors files.
* :func:`read_records`, :func:`load_snapshots`, :func:`load_snapshot`: read them back offline.
"""

from ._io import Snapshot, load_snapshot, load_snapshots, read_records
from .snapshot import WeightSnapshot
from .spectrum import RECORD_FILENAME, SpectrumMonitor, record_scalars

__all__ = [
    "RECORD_FILENAME",
    "Snapshot",
    "SpectrumMonitor",
    "WeightSnapshot",
    "load_snapshot",
    "load_snapshots",
    "read_records",
    "record_scalars",
]
