"""Refuse a YAML document whose alias expansion is huge (an "alias bomb") before anything parses it (stdlib + PyYAML).

YAML anchors and aliases let a few lines stand for an exponentially large value: nine levels of nine aliases are a
1 KB file that expands to 9⁹ ≈ 4·10⁸ nodes, which jsonargparse expanded for 82 s and 5.4 GB before a ``MemoryError``.
:func:`check_yaml_expansion` composes the document (aliases stay shared nodes, so this is cheap), counts the nodes
of its expansion with memoisation, and refuses past :data:`MAX_YAML_NODES`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_NODES", "check_yaml_expansion"]

MAX_YAML_NODES = 100_000
"""Most nodes a config may expand to (the packaged configs have about 60)."""

MAX_YAML_BYTES = 16 * 2**20
"""Largest config file read."""


def _expanded_size(root: object, limit: int) -> int:
    """Nodes of the expansion of ``root`` (a composed ``yaml.Node``), counted once per alias use; ``limit + 1`` as
    soon as it passes ``limit``; ``-1`` for a recursive alias (a node that contains itself)."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            sizes[key] = 1
            continue
        if children_done:
            active.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in active:
            return -1
        active.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                return -1
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def check_yaml_expansion(path: str | os.PathLike[str], limit: int = MAX_YAML_NODES) -> None:
    """Refuse the YAML file ``path`` when its aliases expand past ``limit`` nodes, or recurse.

    Files that do not exist or are not valid YAML are left to the parser (which names them).

    Raises:
        ValueError: naming the file, the expanded size and the bound.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "bomb.yaml"
        >>> _ = path.write_text("a: &a [1, 1, 1]\\nb: &b [*a, *a, *a]\\nc: [*b, *b, *b]\\n")
        >>> check_yaml_expansion(path, limit=20)
        Traceback (most recent call last):
        ...
        ValueError: ...bomb.yaml: its YAML aliases expand to more than 20 nodes...
    """
    import yaml

    path = Path(path)
    try:
        if not path.is_file():
            return
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ValueError(f"{path}: a config of {path.stat().st_size} bytes is larger than the {MAX_YAML_BYTES} "
                             "bytes spikelearn reads.")
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return
    except RecursionError:
        raise ValueError(f"{path}: the YAML document is nested too deeply to be a config.") from None
    for document in documents:
        if document is None:
            continue
        size = _expanded_size(document, limit)
        if size < 0:
            raise ValueError(f"{path}: a YAML alias refers to a node that contains it (a recursive document); a "
                             "config must be a finite tree.")
        if size > limit:
            raise ValueError(f"{path}: its YAML aliases expand to more than {limit} nodes (an alias bomb?); refused "
                             "before expanding it. Write the config without nested aliases.")
