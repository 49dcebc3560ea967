"""The mathematics of spikelearn: pure tensor functions (torch, numpy, scipy only; no Lightning)."""
