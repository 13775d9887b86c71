"""The self-contained HTML report page: tables, plots embedded as base64 PNG, problems, manifest.

The page loads nothing from anywhere: styles are inline, images are data: URIs, and even the favicon
is an empty data: URI so a browser opening the file from disk makes no request at all.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.reports.plots import figure_png

FigureLike = Figure | bytes | Path

EXPLANATION = """
<p><b>FD</b> (Fréchet distance) compares two image sets through the mean and covariance of their
features in one feature space: FD = ‖μ<sub>1</sub>−μ<sub>2</sub>‖² (the <i>mean term</i>) +
tr Σ<sub>1</sub> + tr Σ<sub>2</sub> − 2 tr (Σ<sub>1</sub>Σ<sub>2</sub>)<sup>½</sup> (the <i>trace
term</i>). Smaller is closer. Raw FDs have the units of each space and are not comparable across
spaces.</p>
<p><b>nFD</b> (normalized FD) of a region is FD(clean, region blurred) / FD(clean, whole image blurred):
how strongly a space reacts to that region, on a scale shared by all spaces. The <i>conditional</i> form
uses only the images that hold the region; the <i>population</i> form uses every image (those without the
region are left unchanged, so a rare region's nFD is diluted by its prevalence). Both sets of every FD
hold the same images, and a ratio's numerator and denominator rest on the same images; <i>n</i> is that
number of images, <i>lost</i> the images dropped because a perturbed copy gave no feature.</p>
<p><b>Δ curves</b> show FD between two sets whose attribute proportions differ by Δ (mean ± std over
draws). <b>Kendall τ</b> measures whether two spaces rank generators alike (1 same, −1 reversed).
<b>FD(α)/FD(1)</b> shows how much of a space's FD comes from channel statistics ("style").</p>
<p>Numbers in brackets are 95 % bootstrap confidence intervals over images (the <i>basic</i> interval,
which corrects the upward bias of resampled FDs; paired, so clean and perturbed copies of an image are
drawn together). An interval is widened to reach its estimate when the bootstrap bias is larger than its
spread, and says so in the diagnostics. Mean ± std over repeated draws (Δ curves) is never shown as an
interval.</p>
"""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1150px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #bbb; }
table.results { border-collapse: collapse; margin: .5em 0 1em; font-size: 0.9em; }
table.results th, table.results td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.results th { background: #f0f0f0; }
table.results td:first-child, table.results th:first-child { text-align: left; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
p.caption { font-size: 0.85em; color: #555; margin-top: -.5em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: 0.85em; }
ul.problems li { color: #8a1c1c; }
"""


@dataclass(frozen=True)
class ReportSection:
    """A section another module adds to the page: a title, HTML body and figures.

    A figure is a matplotlib Figure, PNG bytes or the Path of a PNG file, optionally paired with a
    caption as (caption, figure).
    """

    title: str
    html: str = ""
    figures: Sequence[FigureLike | tuple[str, FigureLike]] = field(default_factory=tuple)


def png_data_uri(figure: FigureLike) -> str:
    """A base64 data: URI of a figure (rendered to PNG), of PNG bytes, or of a PNG file."""
    if isinstance(figure, Path):
        if not figure.is_file():
            raise FileNotFoundError(f"figure file {figure} does not exist")
        data = figure.read_bytes()
    else:
        data = figure if isinstance(figure, bytes) else figure_png(figure)
    if not data.startswith(b"\x89PNG"):
        raise ValueError(
            f"embedded figure {figure if isinstance(figure, Path) else 'bytes'} must be a PNG image"
        )
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_html(figure: FigureLike, caption: str = "") -> str:
    """A <figure> holding the embedded image and its caption."""
    alt = html.escape(caption or "plot", quote=True)
    parts = [f'<figure><img src="{png_data_uri(figure)}" alt="{alt}">']
    if caption:
        parts.append(f"<figcaption>{html.escape(caption)}</figcaption>")
    parts.append("</figure>")
    return "".join(parts)


def section_html(section: ReportSection) -> str:
    """One extra section: heading, its HTML as given, then its figures."""
    parts = [f"<section><h2>{html.escape(section.title)}</h2>", section.html]
    for entry in section.figures:
        caption, figure = entry if isinstance(entry, tuple) else ("", entry)
        parts.append(figure_html(figure, caption))
    parts.append("</section>")
    return "\n".join(parts)


def render_page(
    *,
    title: str,
    tables_html: Iterable[str],
    figures: Iterable[tuple[str, FigureLike]],
    problems: Sequence[str],
    manifest: Mapping[str, Any],
    extra_sections: Iterable[ReportSection] = (),
) -> str:
    """The complete HTML document as text."""
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<section><h2>What the numbers mean</h2>",
        EXPLANATION,
        "</section>",
        "<section><h2>Tables</h2>",
        *tables_html,
        "</section>",
    ]
    figure_parts = [figure_html(figure, caption) for caption, figure in figures]
    if figure_parts:
        body += ["<section><h2>Plots</h2>", *figure_parts, "</section>"]
    body += [section_html(section) for section in extra_sections]
    body.append('<section><h2>Problems</h2><ul class="problems">')
    body += [f"<li>{html.escape(line)}</li>" for line in problems] or ["<li>None.</li>"]
    body.append("</ul></section>")
    manifest_text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    body += [
        "<section><h2>Run manifest</h2>",
        f"<details><summary>config, seeds, versions, hashes, device, timings</summary>"
        f"<pre>{html.escape(manifest_text, quote=False)}</pre></details>",
        "</section>",
    ]
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head><body>",
    ]
    return "\n".join([*head, *body, "</body></html>"]) + "\n"
