"""A YAML alias bomb is refused before anything expands it (issue 18, row 9)."""

from __future__ import annotations

import time

import pytest

from spikelearn._yaml_guard import MAX_YAML_NODES, check_yaml_expansion
from spikelearn.cli import CONFIG_NAMES, build_cli, config_path, main


def _bomb(path, levels: int, width: int = 9):
    lines = ["model:", "  width: 16", "data:", "  input_dim: 16", f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("levels", [6, 9])  # 9^6 = 5·10^5 and 9^9 = 4·10^8 nodes from a few lines
def test_an_alias_bomb_is_refused_before_expansion(tmp_path, levels):
    bomb = _bomb(tmp_path / "bomb.yaml", levels)
    start = time.monotonic()
    with pytest.raises(ValueError, match=rf"bomb.yaml: its YAML aliases expand to more than {MAX_YAML_NODES} nodes"):
        build_cli(["fit", "--config", str(bomb)])
    assert time.monotonic() - start < 10


def test_an_alias_bomb_ends_the_cli_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(_bomb(tmp_path / "bomb.yaml", 9))])
    assert exit_info.value.code == 1
    assert "alias bomb" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ValueError, match=r"loop.yaml: a YAML alias refers to a node that contains it"):
        check_yaml_expansion(path)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_the_packaged_configs_and_a_long_schedule_pass(tmp_path, name):
    check_yaml_expansion(config_path(name))
    long = tmp_path / "long.yaml"
    long.write_text("model:\n  step_c: [" + ", ".join(["0.5"] * 10_000) + "]\n")
    check_yaml_expansion(long)
