"""Lightning callbacks of spikelearn, installed as ``spikelearn.callbacks``."""
