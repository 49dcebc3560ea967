"""``spikelearn fit --config <yaml>``: the LightningCLI entry point.

The model and data are spikelearn's :class:`~spikelearn.module.TwoLayerModule` and
:class:`~spikelearn.data.GaussianDataModule`; ``data.input_dim`` is linked to ``model.input_dim``. Packaged
example configs live in :mod:`spikelearn.configs`; :func:`config_path` gives their paths.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

# Lightning 2.6 calls jsonargparse APIs deprecated in 4.49; the warnings say nothing about the user's config.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402

from spikelearn._cli_errors import SpikelearnParser, run_reporting_errors  # noqa: E402
from spikelearn.data import GaussianDataModule  # noqa: E402
from spikelearn.module import TwoLayerModule, check_resume_config, load_checkpoint  # noqa: E402
from spikelearn.run_lock import local_paths  # noqa: E402

__all__ = [
    "CONFIG_NAMES",
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_MIN_FREE_MB",
    "SIGTERM_EXIT_CODE",
    "OutputDirectoryError",
    "SpikelearnCLI",
    "build_cli",
    "check_output_dir",
    "config_path",
    "main",
    "resolve_config_names",
]

DEFAULT_MIN_FREE_MB = 100.0
"""Free space (MiB) every output directory must have before ``spikelearn fit`` starts (``--min_free_mb``)."""

DEFAULT_CHECKPOINT_EVERY = 1
"""``--checkpoint_every_n_steps``: how often the default ``ModelCheckpoint`` rewrites ``last.ckpt`` (atomically)."""

SIGTERM_EXIT_CODE = 143
"""Exit status of a fit stopped by SIGTERM (128 + 15, the shell's convention): schedulers must not read it as done."""

_CKPT_KEYWORDS = ("last", "hpc", "registry")

CONFIG_NAMES = ("two_step_independent", "two_step_reused", "many_steps")
"""Packaged example configs."""

DEFAULT_SAVE_DIR = "runs"
"""The default logger's ``save_dir``; ``--trainer.default_root_dir X`` replaces it by ``X``."""

DESCRIPTION = (
    "spikelearn: train the two-layer network f(x) = a·σ(Wx)/√N with a few large gradient steps "
    "η_t = c_t N^α_t and watch the singular values of W leave the bulk (outliers = learned directions). "
    f"Packaged configs, usable by name: --config {{{','.join(CONFIG_NAMES)}}} (or a path to your own YAML). "
    "Example: spikelearn fit --config two_step_reused --model.width 512 --data.input_dim 512 --data.batch_size 512; "
    "then spikelearn report RUN_DIR for a page of the run. Theory and record fields: docs/theory.md."
)
"""``spikelearn --help`` and ``spikelearn fit --help`` text."""

TRAINER_DEFAULTS: dict[str, Any] = {
    "max_steps": 2,
    "max_epochs": -1,  # one endless epoch of step indices: max_steps ends it
    "use_distributed_sampler": False,  # the data module shards the full batch by rank itself
    "num_sanity_val_steps": 0,
    "log_every_n_steps": 1,
    "enable_model_summary": False,
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": DEFAULT_SAVE_DIR, "name": "spikelearn", "default_hp_metric": False},
    },
}


def config_path(name: str) -> Path:
    """Path of a packaged example config.

    Raises:
        ValueError: for an unknown name (lists the known ones).

    Example:
        >>> config_path("two_step_reused").name
        'two_step_reused.yaml'
    """
    if name not in CONFIG_NAMES:
        raise ValueError(f"Expected a config name in {list(CONFIG_NAMES)}, got {name!r}.")
    return Path(str(resources.files("spikelearn.configs").joinpath(f"{name}.yaml")))


class OutputDirectoryError(OSError):
    """An output directory cannot be created, is not writable, or has too little free space."""


def check_output_dir(path: str | os.PathLike[str], min_free_mb: float = DEFAULT_MIN_FREE_MB) -> Path:
    """Make sure ``path`` exists (creating it), takes a file, and has at least ``min_free_mb`` MiB free.

    Run before training so that a read-only, misplaced or full output directory fails in the first second,
    not when the first snapshot or checkpoint is written an hour later.

    Raises:
        ValueError: if ``min_free_mb`` is not a finite number >= 0.
        OutputDirectoryError: naming the directory and what is wrong with it.

    Example:
        >>> import tempfile
        >>> check_output_dir(tempfile.mkdtemp(), min_free_mb=0).is_dir()
        True
    """
    if isinstance(min_free_mb, bool) or not isinstance(min_free_mb, (int, float)) or not (
        math.isfinite(min_free_mb) and min_free_mb >= 0
    ):
        raise ValueError(f"`min_free_mb` must be a finite number >= 0, got {min_free_mb!r}.")
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputDirectoryError(f"Output directory {path} cannot be created: {existing} is a file, not a directory.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputDirectoryError(
            f"Output directory {path} is not writable: {existing} does not grant write permission to this user."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".spikelearn-write-test-") as probe:
            probe.write(b"spikelearn")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise OutputDirectoryError(f"Output directory {path} is not writable: {err.strerror or err}.") from err
    free_mb = shutil.disk_usage(path).free / 2**20
    if free_mb < min_free_mb:
        raise OutputDirectoryError(
            f"Output directory {path} has {free_mb:.1f} MiB free, less than `min_free_mb` = {min_free_mb:g} MiB: free "
            "some space, choose another directory, or lower --min_free_mb."
        )
    return path


def _output_dirs(trainer: Any) -> list[Path]:
    """Where a run writes: ``default_root_dir``, each logger's ``save_dir``, each callback's ``dirpath``."""
    candidates: list[Any] = [trainer.default_root_dir]
    candidates += [getattr(logger, "save_dir", None) for logger in trainer.loggers]
    candidates += [getattr(callback, "dirpath", None) for callback in trainer.callbacks]
    return local_paths(candidates)


def _as_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return value.as_dict() if hasattr(value, "as_dict") else dict(value)


def _resolve_config(value: str) -> str:
    """The file of one ``--config`` value: a bare packaged name is the packaged config (say so when a file or
    directory of that name is here too: ``./NAME`` is the explicit path form); anything else must exist."""
    if value in CONFIG_NAMES:
        packaged = str(config_path(value))
        if Path(value).exists():
            sys.stderr.write(f"spikelearn: --config {value} is the packaged config {packaged}; for the {value!r} in "
                             f"this directory write --config ./{value}.\n")
        return packaged
    if not Path(value).exists():
        raise ValueError(f"`--config`: {value!r} is neither a file (relative to {os.getcwd()}) nor a packaged config "
                         f"name; packaged configs: {', '.join(CONFIG_NAMES)}.")
    return value


def resolve_config_names(args: list[str]) -> list[str]:
    """Replace a packaged config name after ``--config`` / ``-c`` by its path; a bare packaged name always means the
    packaged config (``./NAME`` names a file of that name).

    Raises:
        ValueError: for a ``--config`` value that is neither a file nor a packaged name (lists the names).

    Example:
        >>> resolve_config_names(["fit", "--config", "two_step_reused"])[2].endswith("two_step_reused.yaml")
        True
        >>> resolve_config_names(["fit", "--model.width", "64"])
        ['fit', '--model.width', '64']
    """
    out: list[str] = []
    expect = False
    for arg in args:
        if expect:
            arg = _resolve_config(arg)
        elif arg.startswith("--config="):
            arg = f"--config={_resolve_config(arg[9:])}"
        expect = arg in ("--config", "-c")
        out.append(arg)
    return out


_LAST_RE = re.compile(r"^last(-v\d+)?\.ckpt$")


def _last_checkpoint_dirs(trainer: Any) -> list[Path]:
    """Where ``--ckpt_path last`` looks: each ``ModelCheckpoint``'s ``dirpath``; for a default one, the
    ``checkpoints/`` of every version of the logger (a resumed run logs to a new version) or of
    ``default_root_dir`` without a logger."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    dirs: list[Path] = []
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        if callback.dirpath is not None:
            dirs.append(Path(callback.dirpath))
        elif trainer.loggers:
            logger = trainer.loggers[0]
            save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
            base = Path(save_dir) / str(logger.name or "")
            dirs += sorted(p for p in base.glob("*/checkpoints") if p.is_dir()) if base.is_dir() else []
        else:
            dirs.append(Path(trainer.default_root_dir) / "checkpoints")
    return [Path(p).expanduser().absolute() for p in dict.fromkeys(dirs)]


def _find_last_checkpoint(trainer: Any) -> tuple[Path | None, list[Path]]:
    """The newest ``last.ckpt`` (or ``last-vN.ckpt``) among :func:`_last_checkpoint_dirs`, and the places searched."""
    dirs = _last_checkpoint_dirs(trainer)
    found = [p for d in dirs if d.is_dir() for p in d.iterdir() if _LAST_RE.match(p.name) and p.is_file()]
    return (max(found, key=lambda p: p.stat().st_mtime) if found else None), dirs


def _allowed_values() -> dict[str, str]:
    """Plain-words help of the arguments whose docstrings point at a list of names (shown by ``fit --help``)."""
    from spikelearn.data import BATCH_MODES
    from spikelearn.functional.activations import ACTIVATIONS
    from spikelearn.functional.model import INIT_KINDS, LOSSES, READOUT_KINDS
    from spikelearn.functional.schedule import TAILS
    from spikelearn.functional.targets import TARGET_NAMES

    def one_of(names: Any) -> str:
        return "one of: " + ", ".join(names)

    return {
        "model.activation": f"σ, {one_of(ACTIVATIONS)} (shifted_tanh = tanh(z + 1/2), all Hermite coefficients non-zero).",
        "model.init": f"W0: {one_of(INIT_KINDS)} (gaussian = iid N(0, 1/d); sphere = rows uniform on the unit sphere).",
        "model.readout_init": f"a (fixed during the steps): {one_of(READOUT_KINDS)} (N(0, 1/N), ±1/√N, 1/√N).",
        "model.step_tail": f"η_t after the listed steps: {one_of(TAILS)}.",
        "model.loss": f"{one_of(LOSSES)} (correlation: the residual is y itself).",
        "data.batches": f"{one_of(BATCH_MODES)} (fresh batch every step; step 1's batch at every step; a fresh "
        "batch every data.resample_every steps).",
        "data.target": f"link g of y = g(Bᵀx) + ε: {one_of(TARGET_NAMES)}, or a sum such as he2+he3 (orders 1-6).",
    }


def _plain_help(parser: LightningArgumentParser) -> None:
    """Help text without Sphinx markup (``:func:`x``` → ``x``, double backquotes dropped) and with allowed values."""
    import re

    allowed = _allowed_values()
    allowed["config"] = f"Path to a YAML config, or the name of a packaged one: {', '.join(CONFIG_NAMES)}."
    for action in parser._actions:
        dest = getattr(action, "dest", "")
        if dest in allowed:
            action.help = allowed[dest]
        elif isinstance(action.help, str):
            text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1), action.help)
            action.help = text.replace("``", "")
    for group in parser._action_groups:
        for name in ("title", "description"):
            text = getattr(group, name, None)
            if isinstance(text, str):
                setattr(group, name, re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text).replace("``", ""))


class SpikelearnCLI(LightningCLI):
    """LightningCLI with ``data.input_dim`` linked into ``model.input_dim`` and pre-flight checks before ``fit``.

    Before training starts it checks every output directory (:func:`check_output_dir`, ``--min_free_mb``) and
    reads a ``--ckpt_path`` file weights-only (:func:`~spikelearn.module.load_checkpoint`), so that a checkpoint
    crafted to run code on unpickling is refused with a message saying why.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # only `fit`: the module has no validation/test/predict step (the readout's test MSE is logged by fit)
        return {"fit": LightningCLI.subcommands()["fit"]}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        _plain_help(parser)
        parser.link_arguments("data.input_dim", "model.input_dim")
        parser.add_argument(
            "--min_free_mb",
            type=float,
            default=DEFAULT_MIN_FREE_MB,
            help="Refuse to start when an output directory has less free space than this (MiB); 0 disables.",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=DEFAULT_CHECKPOINT_EVERY,
            help="Without a ModelCheckpoint in the config, rewrite <log_dir>/checkpoints/last.ckpt (atomically) after "
            "every this many steps and at the end, so a killed run resumes with --ckpt_path last; 0: only at the end.",
        )

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path (for its hyperparameters) while parsing, before any hook: check it first,
        # weights-only, so a crafted checkpoint is refused with spikelearn's message instead of torch's
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else {}
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and str(ckpt_path) not in _CKPT_KEYWORDS and config.get("weights_only") is not False:
            checkpoint = load_checkpoint(ckpt_path)
            # refuse changed model / data fields and precision by name, before any weight is loaded; the fields
            # then equal the checkpoint's, so LightningCLI's silent override of the model fields is skipped
            check_resume_config(checkpoint, model=_as_dict(config.get("model")), data=_as_dict(config.get("data")),
                                precision=(config.get("trainer") or {}).get("precision"), source=str(ckpt_path))
            return
        parse = getattr(super(), "_parse_ckpt_path", None)
        if parse is not None:
            parse()

    def before_instantiate_classes(self) -> None:
        # --trainer.default_root_dir X moves the default logger's runs/ to X (a save_dir the user set stays)
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.get("trainer", {}).get("default_root_dir")
        logger = config.get("trainer", {}).get("logger")
        init_args = getattr(logger, "init_args", None)
        if root is not None and init_args is not None and getattr(logger, "class_path", "").endswith("TensorBoardLogger"):
            if init_args.get("save_dir") == DEFAULT_SAVE_DIR:
                init_args["save_dir"] = str(root)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        # every fit ends with its result (RunSummary) and shows steps, not epochs (StepProgressBar)
        from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar

        from spikelearn.callbacks import RunSummary, StepProgressBar

        given = config.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        extra = list(callbacks)
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in given):
            extra.append(StepProgressBar())
        if not any(isinstance(c, RunSummary) for c in given):
            extra.append(RunSummary())  # after the bar: it prints once the bar has stopped
        if config.get("enable_checkpointing") is not False and not any(isinstance(c, ModelCheckpoint) for c in given):
            every = self._checkpoint_every()
            # last.ckpt only (save_top_k=0), every `every` steps and at the end: a crash loses at most `every` steps
            extra.append(ModelCheckpoint(save_last=True, save_top_k=0, every_n_train_steps=every or None,
                                         save_on_train_epoch_end=False))
        from spikelearn.checkpoint_io import with_atomic_checkpoint_io

        config["plugins"] = with_atomic_checkpoint_io(config.get("plugins"))  # atomic, weights-only checkpoints
        return super()._instantiate_trainer(config, extra)

    def _checkpoint_every(self) -> int:
        config = self.config[self.subcommand] if self.subcommand else self.config
        every = config.get("checkpoint_every_n_steps", DEFAULT_CHECKPOINT_EVERY)
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"`--checkpoint_every_n_steps` must be an integer >= 0 (0: only at the end), got {every!r}.")
        return every

    def _check_max_steps(self) -> None:
        max_steps = self.trainer.max_steps
        if max_steps == 0 or max_steps < -1:
            raise ValueError(f"`trainer.max_steps` must be >= 1 (or -1 for no limit), got {max_steps}: a run of no "
                             "step trains nothing and leaves no record to report.")
        if max_steps == -1:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn("`trainer.max_steps` is -1: this run has no step limit and trains until it is stopped "
                           "(SIGTERM or Ctrl-C); resume it with --ckpt_path last.")

    def _resolve_last(self) -> None:
        # Lightning's "last" only looks in this run's (new) version directory and silently restarts from step 0 when
        # it finds nothing there; look in every version of the run's logger and refuse when there is nothing
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        found, searched = _find_last_checkpoint(self.trainer)
        if found is None:
            places = ", ".join(str(p) for p in searched) or "no ModelCheckpoint directory"
            raise ValueError(f"`--ckpt_path last`: no last.ckpt to resume (searched {places}). Start the run without "
                             "--ckpt_path, or give the checkpoint's path.")
        config["ckpt_path"] = str(found)
        sys.stderr.write(f"spikelearn: --ckpt_path last resumes {found}\n")

    def before_fit(self) -> None:
        config = self.config[self.subcommand]
        self._check_max_steps()
        self._resolve_last()
        for path in _output_dirs(self.trainer):
            check_output_dir(path, config.get("min_free_mb", DEFAULT_MIN_FREE_MB))
        from lightning.pytorch.utilities import rank_zero_only

        from spikelearn.run_lock import lock_run_directories, run_directories

        if getattr(rank_zero_only, "rank", 0) == 0:  # one writer per run directory (released in _run_subcommand)
            self._run_locks = lock_run_directories(run_directories(self.trainer))
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        # what a kill -9 mid-write left in the directories this run now holds (and in the resumed run's, when no
        # live run holds it): spikelearn's own .tmp-XXXXXXXX names only
        from spikelearn.run_lock import remove_stale_temporaries

        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        also: list[Path] = []
        if ckpt_path and str(ckpt_path) not in _CKPT_KEYWORDS and Path(str(ckpt_path)).is_file():
            checkpoint = Path(str(ckpt_path)).expanduser().absolute()
            also = [checkpoint.parent, checkpoint.parent.parent]
        removed = remove_stale_temporaries(self._run_locks, also=also)
        if removed:
            folders = sorted({str(p.parent) for p in removed})
            sys.stderr.write(f"spikelearn: removed {len(removed)} stale temporary file(s) of an interrupted write in "
                             f"{', '.join(folders)}\n")

    def _run_subcommand(self, subcommand: str) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            # Lightning's SIGTERMException is a SystemExit without a code (status 0, "finished"): say the run
            # stopped, how to resume it, and exit 143
            sys.stderr.flush()
            sys.stderr.write(f"spikelearn: error: {self._stopped_message()}\n")
            raise SystemExit(SIGTERM_EXIT_CODE) from None
        finally:
            for lock in getattr(self, "_run_locks", []):
                lock.release()
            self._run_locks = []

    def _stopped_message(self) -> str:
        trainer = self.trainer
        steps = f"after step {trainer.global_step}" + (f" of {trainer.max_steps}" if trainer.max_steps > 0 else "")
        saved = [Path(p) for c in trainer.checkpoint_callbacks
                 for p in (getattr(c, "last_model_path", ""), getattr(c, "best_model_path", "")) if p]
        saved = [p for p in saved if p.is_file()]
        if not saved:
            return (f"stopped by SIGTERM {steps}; no checkpoint was saved, so the run cannot be resumed (keep the "
                    "default --checkpoint_every_n_steps, or add a ModelCheckpoint with save_last=True).")
        newest = max(saved, key=lambda p: p.stat().st_mtime)
        return f"stopped by SIGTERM {steps}; resume with the same command and --ckpt_path {newest}"


def build_cli(args: list[str] | None = None, run: bool = True) -> SpikelearnCLI:
    """Parse ``args`` (default ``sys.argv[1:]``) and, when ``run``, execute the subcommand; returns the CLI.

    A packaged config name after ``--config`` (e.g. ``two_step_reused``) is replaced by its path first.
    """
    from spikelearn._cli_errors import _config_files
    from spikelearn._yaml_guard import check_yaml_expansion

    if args is None:
        resolved = resolve_config_names(sys.argv[1:])
        if resolved != sys.argv[1:]:
            sys.argv[1:] = resolved
    elif isinstance(args, list):
        args = resolve_config_names(args)
    for config_file in _config_files(sys.argv[1:] if args is None else [str(a) for a in args]):
        check_yaml_expansion(config_file)  # an alias bomb is refused before jsonargparse expands it
    return SpikelearnCLI(
        TwoLayerModule,
        GaussianDataModule,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # the module's own SGD with lr = η_t √N: no --optimizer / --lr_scheduler
        parser_kwargs={"description": DESCRIPTION, "fit": {"description": DESCRIPTION}},
        parser_class=SpikelearnParser,  # parser errors end in one line naming the field or the YAML file
        args=args,
        run=run,
    )


class _NoAdvertisements(logging.Filter):
    """Drop Lightning's "💡 Tip: … install litlogger / litmodels" lines; everything else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def main(args: list[str] | None = None) -> None:
    """Console entry point ``spikelearn``: the CLI without Lightning's package tips and internal deprecations.

    ``spikelearn report RUN_DIR`` is answered here, before LightningCLI parses (:func:`spikelearn.report.main`).
    """
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["report"]:
        from spikelearn.report import main as report_main

        report_main(argv[1:])
        return
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdvertisements())
    # raised inside Lightning 2.6 by torch >= 2.10's pytree changes; nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    run_reporting_errors(lambda: build_cli(args))  # a user error ends in one line: "spikelearn: error: ..."


if __name__ == "__main__":
    main()
