"""Package layout: imports point one way, public names are listed once (STYLE.md §1–2)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["spikelearn", "spikelearn.functional", "spikelearn.callbacks", "spikelearn.data", "spikelearn.module",
            "spikelearn.cli", "spikelearn.report", "spikelearn.run_lock", "spikelearn.readout"]


def test_functional_does_not_import_lightning():
    code = "import sys, spikelearn.functional; print(any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", PACKAGES)
def test_all_has_no_duplicates_and_resolves(name):
    module = importlib.import_module(name)
    public = getattr(module, "__all__", [])
    assert len(public) == len(set(public))
    assert all(hasattr(module, item) for item in public)


def test_callbacks_install_under_the_package_name():
    import spikelearn.callbacks

    assert spikelearn.callbacks.__name__ == "spikelearn.callbacks"
