"""write_report and `fdbench report`: a self-contained page with tables, plots, problems and manifest."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.reports import ReportSection, build_manifest, write_report
from bench.reports.html import png_data_uri
from bench.reports.manifest import write_manifest
from bench.reports.plots import new_figure
from bench.reports.results import load_results, save_results, validate_results
from tests.test_reports_support import full_results, nfd_oracle


class _PageParser(HTMLParser):
    """Collects every URL-bearing attribute, the <img> sources and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.images: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "data", "action", "poster"} and value is not None:
                self.urls.append((tag, name, value))
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def manifest() -> dict:
    return build_manifest(
        config={"experiment": "toy"},
        seeds=0,
        device={"cpu": "test cpu", "gpu": None},
        notes=["space clip-vit-b32 could not load: no network"],
    )


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, manifest) -> Path:
    folder = tmp_path_factory.mktemp("run")
    figure = new_figure(3, 2)
    figure.subplots().plot([0, 1, 2], [2, 1, 3])
    section = ReportSection(
        title="Spectral analysis", html="<p>azimuthal profile</p>", figures=[("profile", figure)]
    )
    write_report(full_results(), manifest, folder, extra_sections=[section])
    return folder


def test_run_folder_holds_every_file(report_dir: Path) -> None:
    for name in ("results.csv", "results.json", "manifest.json", "report.md", "report.html"):
        assert (report_dir / name).is_file(), name
    assert len(list((report_dir / "plots").glob("*.png"))) == 6


def test_page_is_self_contained(report_dir: Path) -> None:
    page = _parse(report_dir / "report.html")
    assert page.urls, "the page should at least embed its images"
    for tag, attribute, url in page.urls:
        assert url.startswith("data:") or url.startswith("#"), f"<{tag} {attribute}> loads {url[:60]}"
    assert "script" not in page.tags
    raw = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "http://" not in raw and "https://" not in raw and "@import" not in raw


def test_every_plot_is_an_embedded_png(report_dir: Path) -> None:
    page = _parse(report_dir / "report.html")
    assert len(page.images) == 6 + 1  # experiment plots + the extra section's figure
    for source in page.images:
        header, payload = source.split(",", 1)
        assert header == "data:image/png;base64"
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_page_shows_tables_problems_manifest_and_extra_section(report_dir: Path, manifest: dict) -> None:
    raw = (report_dir / "report.html").read_text(encoding="utf-8")
    text = " ".join(_parse(report_dir / "report.html").text)
    assert "What the numbers mean" in text
    assert "normalized FD" in text
    assert f"{nfd_oracle('Eyes', 'toy-tanh'):.4g}" in text
    assert "space clip-vit-b32 could not load: no network" in text
    assert "region Hat absent from every mask" in text
    assert "<details>" in raw and '"cpu": "test cpu"' in text
    assert "Spectral analysis" in text and "azimuthal profile" in text
    assert raw.index("Spectral analysis") < raw.index("Run manifest")


def test_report_command_rebuilds_the_page(tmp_path: Path, manifest: dict, capsys) -> None:
    results = full_results()
    results = results[results["experiment"].isin(["region_blur", "generator_comparison"])]
    save_results(results, tmp_path)
    write_manifest(manifest, tmp_path)
    (tmp_path / "results.json").unlink()
    csv_before = (tmp_path / "results.csv").read_bytes()
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    page = _parse(tmp_path / "report.html")
    assert len(page.images) == 4  # nFD bars + heatmap, ranks + Kendall τ
    assert "space clip-vit-b32 could not load: no network" in " ".join(page.text)
    assert (tmp_path / "results.csv").read_bytes() == csv_before  # inputs are left as they were
    assert not (tmp_path / "results.json").exists()
    pd.testing.assert_frame_equal(load_results(tmp_path), validate_results(results).reset_index(drop=True))


def test_report_command_errors(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "results.csv").write_text("experiment,space\nx,y\n")
    assert main(["report", str(tmp_path)]) == 2
    assert "lacks column(s) variant" in capsys.readouterr().err


def test_report_without_plots_or_problems(tmp_path: Path) -> None:
    rows = full_results()
    only_generic = rows[(rows["experiment"] == "region_blur") & (rows["metric"] == "fd_trace_term")]
    only_generic = only_generic.assign(experiment="custom")
    page = write_report(only_generic, {"notes": []}, tmp_path)
    parsed = _parse(page)
    assert parsed.images == []
    assert "None." in " ".join(parsed.text)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"notes": []}


def test_non_png_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="PNG"):
        png_data_uri(b"GIF89a")


def test_extra_section_accepts_png_files(tmp_path: Path) -> None:
    figure = new_figure(2, 2)
    figure.subplots().plot([0, 1], [1, 0])
    png = tmp_path / "spectrum.png"
    figure.savefig(png)
    page = write_report(
        full_results().iloc[:0], {}, tmp_path / "run", extra_sections=[ReportSection("Spectra", "", [png])]
    )
    assert len(_parse(page).images) == 1
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        png_data_uri(tmp_path / "gone.png")
