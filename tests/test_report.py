"""`spikelearn report RUN_DIR`: the page of a tiny real run, rendered in headless chromium and read back."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import lightning as L
import pytest

from spikelearn.callbacks import SpectrumMonitor, read_records
from spikelearn.cli import build_cli, main
from spikelearn.data import GaussianDataModule
from spikelearn.module import TwoLayerModule
from spikelearn.report import REPORT_FILENAME, build_report

SMALL = ["--model.width", "96", "--data.input_dim", "96", "--data.batch_size", "96", "--data.test_size", "96",
         "--data.readout_size", "96"]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def _browser() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        pytest.skip(f"headless chromium is needed to render the report and {CHROMIUM} is missing: install it with "
                    "`apt-get install -y chromium` (Debian; .ci/run does this before `make test`)")
    return path


def _chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [_browser(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class _Page(HTMLParser):
    """What the rendered DOM shows: title, sliders, film frames (with their style), table cells by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.title, self.sliders, self.frames, self.tables = "", [], [], {}
        self.label = ""
        self._in, self._table, self._row, self._cell = None, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "title":
            self._in = "title"
        elif tag == "input" and attrs.get("type") == "range":
            self.sliders.append(attrs)
        elif tag == "img" and "frame" in (attrs.get("class") or "").split():
            self.frames.append(attrs)
        elif tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "span" and attrs.get("class") == "film-label":
            self._in = "label"

    def handle_endtag(self, tag):
        if tag in ("title", "span"):
            self._in = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "label":
            self.label += data
        if self._cell is not None:
            self._cell += data


def _rendered(page: Path, tmp_path: Path) -> _Page:
    dom = _chromium(page, tmp_path, "--dump-dom").stdout
    parsed = _Page()
    parsed.feed(dom)
    return parsed


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A 3-step `spikelearn fit` of the many_steps config (figures at steps 0..3, ridge readout) at N = d = 96."""
    root = tmp_path_factory.mktemp("cli_run")
    build_cli(["fit", "--config", "many_steps", *SMALL, "--trainer.max_steps", "3", "--trainer.default_root_dir",
               str(root), "--trainer.enable_progress_bar", "false"])
    run_dir = root / "spikelearn" / "version_0"
    return run_dir, read_records(run_dir / "spectra.jsonl")


def test_report_of_a_cli_run_shows_table_film_readout_and_config(cli_run, tmp_path, capsys):
    run_dir, records = cli_run
    main(["report", str(run_dir)])  # the console entry point, as a user types it
    page = run_dir / REPORT_FILENAME
    assert f"report: {page}" in capsys.readouterr().out
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:""", text), "external URL"
    shown = _rendered(page, tmp_path)
    assert shown.title == f"spikelearn report: {run_dir.name}"
    figures = sorted((run_dir / "figures").glob("spectrum_W_step*.png"))
    assert len(figures) == 4  # many_steps draws steps 0..3
    assert len(shown.frames) == len(figures) and [f["data-step"] for f in shown.frames] == ["0", "1", "2", "3"]
    assert all(f["src"].startswith("data:image/png;base64,") for f in shown.frames)
    assert len(shown.sliders) == 1 and shown.sliders[0]["max"] == str(len(figures) - 1)
    # the script ran: the last frame is the one shown, the label names its step
    visible = [f["data-step"] for f in shown.frames if "display: block" in (f.get("style") or "")]
    assert visible == ["3"] and shown.label.startswith("step 3")
    header, *rows = shown.tables["summary"]
    assert [row[header.index("step")] for row in rows] == [str(r["step"]) for r in records]
    last = dict(zip(header, rows[-1]))
    assert last["outliers tot/defl"].split(" / ")[0] == str(records[-1]["outliers"])
    assert last["predicted asym/finite-N"].split(" / ")[1] == str(records[-1]["predicted_outliers_finite_n"])
    readout = dict(shown.tables["readout"][1:])
    assert set(readout) == {"readout/train_mse", "readout/test_mse", "readout/test_mse_stderr"}
    assert 0 < float(readout["readout/test_mse_stderr"]) < float(readout["readout/test_mse"]) < 10
    assert "max_steps: 3" in html.unescape(text)  # the run's config.yaml


def test_report_screenshot_is_not_blank(cli_run, tmp_path):
    from PIL import Image, ImageStat

    run_dir, _ = cli_run
    page = build_report(run_dir, tmp_path / "page.html")
    shot = tmp_path / "report.png"
    _chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        assert max(ImageStat.Stat(image.convert("L")).stddev) > 20  # text and plots, not an empty page


def test_report_draws_the_film_from_records_without_figures(tmp_path):
    module = TwoLayerModule(width=64, input_dim=64, step_c=(1.0, 2.0), step_alpha=(0.35, 0.4))
    data = GaussianDataModule(input_dim=64, batch_size=64)
    monitor = SpectrumMonitor(dirpath=tmp_path / "run")
    L.Trainer(max_steps=2, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[monitor], accelerator="cpu", devices=1,
              use_distributed_sampler=False).fit(module, data)
    page = build_report(tmp_path / "run")
    shown = _rendered(page, tmp_path)
    assert [f["data-step"] for f in shown.frames] == ["0", "1", "2"]  # one drawn frame per record
    assert "readout" not in shown.tables and "No config.yaml" in page.read_text()


def test_report_tolerates_records_with_missing_fields(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / "spectra.jsonl").write_text('{"step": 0, "param": "W", "outliers": 0}\n'
                                       '{"step": 1, "param": "W", "outliers": 2, "outliers_marginal": 1, "eta": 3.0}\n')
    text = build_report(run).read_text()
    assert "2 / – (1 marginal)" in html.unescape(text)


def test_report_errors_name_the_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        build_report(tmp_path / "missing")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "spectra.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match=r"Run directories below it: .*b"):
        build_report(tmp_path / "a")
    with pytest.raises(ValueError, match="holds no record"):
        build_report(tmp_path / "a" / "b")
