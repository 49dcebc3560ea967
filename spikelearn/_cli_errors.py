"""One clear last line for the errors a user of ``spikelearn fit`` can fix (config, files, machine).

jsonargparse reports a bad value as several lines (a union of types, each with its reasons, then a dump of the
whole value) and a YAML syntax error as ``<unicode string>``; Lightning says "No supported gpu backend found!".
:class:`SpikelearnParser` folds a parser error into one line naming the field (and, for YAML, the file);
:func:`run_reporting_errors` turns a user error raised while building or running the CLI into a last line
``spikelearn: error: …`` (set ``SPIKELEARN_TRACEBACK=1`` to see the traceback too) and exit status 1.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

__all__ = ["SpikelearnParser", "clear_message", "one_line_parser_error", "run_reporting_errors"]

_NOISE = ("given value", "subtypes:", "errors:", "subclass types expect", "- a class path", "- a dict", "a class path",
          "a dict with", "a dict without", "tip:")
_MAX = 600


def _config_files(args: list[str]) -> list[Path]:
    files, expect = [], False
    for arg in args:
        if expect:
            files.append(Path(arg))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
        expect = arg in ("--config", "-c")
    return files


def _yaml_error_in(files: list[Path]) -> str | None:
    import yaml

    for path in files:
        try:
            yaml.safe_load(path.read_text())
        except OSError:
            continue
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            context = getattr(err, "context", None)
            return f"YAML syntax error in {path}{where}: {problem}" + (f" ({context})" if context else "")
    return None


def one_line_parser_error(message: str, args: list[str] | None = None) -> str:
    """Fold a jsonargparse error message into one line that keeps the field name and the first reasons.

    Example:
        >>> one_line_parser_error('Parser key "model.step_c":\\n  Expected a <class \\'float\\'>. Got value: nan')
        '`model.step_c`: Expected a float. Got value: nan'
    """
    if "<unicode string>" in message:
        found = _yaml_error_in(_config_files(sys.argv[1:] if args is None else args))
        if found is not None:
            return found
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return message
    head = re.sub(r'^Parser key "([^"]+)":?', r"`\1`:", lines[0])
    reasons = [line.lstrip("- ").strip() for line in lines[1:] if not line.lower().lstrip("- ").startswith(_NOISE)]
    text = " ".join([head, *reasons[:3]])
    text = re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", text)
    return text if len(text) <= _MAX else text[: _MAX - 1] + "…"


class SpikelearnParser(LightningArgumentParser):
    """LightningCLI's parser whose errors end in one line naming the field (or the YAML file and line)."""

    _args: list[str] | None = None

    def parse_args(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        if isinstance(args, (list, tuple)):
            SpikelearnParser._args = [str(a) for a in args]
        return super().parse_args(args, *rest, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        super().error(one_line_parser_error(message, SpikelearnParser._args), ex)


def _innermost_user_error(err: BaseException) -> BaseException:
    """Follow ``__cause__`` / ``__context__`` to the first error raised by spikelearn's own code, if any."""
    seen, current = set(), err
    chain = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    ours = ("spikelearn", "callbacks")
    for candidate in reversed(chain):
        frames = traceback.extract_tb(candidate.__traceback__)
        if frames and any(part in Path(frames[-1].filename).parts for part in ours):
            return candidate
    return err


def _instantiated_class(err: BaseException) -> str | None:
    tb, name = err.__traceback__, None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
            name = type(frame.f_locals["self"]).__name__
        tb = tb.tb_next
    return name


def clear_message(err: BaseException) -> str | None:
    """The one-line message of a user error (``None`` for an error that is a bug and keeps its traceback)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from spikelearn.module import DivergenceError
    from spikelearn.run_lock import RunDirectoryLockedError

    if isinstance(err, MisconfigurationException):
        text = " ".join(str(err).split())
        if "gpu backend" in text.lower() or "Accelerator" in text and "not available" in text:
            import torch

            return (f"`trainer.accelerator`: no GPU is available on this machine (torch.cuda.is_available() is "
                    f"{torch.cuda.is_available()}; Lightning: {text}). Use --trainer.accelerator cpu (or auto).")
        return text
    if isinstance(err, (ValueError, OSError, DivergenceError, RunDirectoryLockedError)):
        inner = _innermost_user_error(err)
        text = " ".join(str(inner).split()) or type(inner).__name__
        owner = _instantiated_class(inner)
        if inner is not err and owner is not None and owner not in text:
            text = f"{owner}: {text}"
        return text if len(text) <= _MAX else text[: _MAX - 1] + "…"
    return None


def run_reporting_errors(run: Callable[[], Any]) -> Any:
    """Call ``run``; a user error becomes the last line ``spikelearn: error: …`` and exit status 1."""
    try:
        return run()
    except Exception as err:  # noqa: BLE001 - sorted into user errors and bugs right here
        message = clear_message(err)
        if message is None:
            raise
        if os.environ.get("SPIKELEARN_TRACEBACK"):
            traceback.print_exc()
        sys.stderr.flush()
        sys.stderr.write(f"spikelearn: error: {message}\n")
        raise SystemExit(1) from None
