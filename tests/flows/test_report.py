"""The analyst report: rendered from sample output, drawn by headless Chromium with no console errors;
the daily flow refreshes the aggregates and publishes the report as an artifact."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from prefect.artifacts import Artifact

from flows.daily import daily_flow
from tests.conftest import SAMPLES
from tests.sample_output import SAMPLE_DATE, sample_output
from transforms.aggregates import read_aggregates, read_labeled
from transforms.report.page import key_figures, render_html, write_report
from undertone.cli import main

WINDOW_WIDTH = 1280
PROBE = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push("error: " + (e.message || (e.target && (e.target.src || e.target.href))
                                                          || "resource")), true);
addEventListener("unhandledrejection", e => __errors.push("rejection: " + e.reason));
document.addEventListener("securitypolicyviolation", e => __errors.push("csp: " + e.violatedDirective + " "
                                                                        + e.blockedURI));
const original = console.error;
console.error = (...args) => { __errors.push("console: " + args.join(" ")); original(...args); };
addEventListener("load", () => {
  const charts = [...document.querySelectorAll("svg.chart")].map(svg => {
    const r = svg.getBoundingClientRect();
    return {name: svg.dataset.chart, x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};
  });
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({errors: __errors, charts, height: document.documentElement.scrollHeight});
  document.body.appendChild(probe);
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed when absent (CI runs as root with the Debian mirrors reachable)."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0:
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run("apt-get update && apt-get install -y chromium", shell=True, env=environment,
                       capture_output=True, timeout=900, check=False)
        found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing and could not be installed")
        pytest.skip("chromium is not installed and this user cannot install it")
    return found


def run_chromium(binary: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--hide-scrollbars", "--force-device-scale-factor=1", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([binary, *flags, *arguments], capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> Path:
    root, _ = sample_output(tmp_path_factory, tiny_encoder)
    return root


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry that knows the tiny model, with evaluation figures in its bundle's metrics.json."""
    folder = tmp_path_factory.mktemp("registry")
    (folder / "bundle").mkdir()
    (folder / "bundle" / "metrics.json").write_text(json.dumps({"evaluation": {
        "semeval2017_test": {"accuracy": 0.7123, "macro_f1": 0.6981, "n": 12284}}}), encoding="utf-8")
    path = folder / "registry.json"
    path.write_text(json.dumps({"default": "tiny-test@0.0.1", "models": {"tiny-test@0.0.1": {
        "path": str(folder / "bundle"), "tasks": ["sentiment"], "metrics": {}}}}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def page(prefect_harness, output: Path, registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the sample output, made with the command line."""
    html = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", "--output", str(output), "--html", str(html), "--registry", str(registry)]) == 0
    return html


def test_report_shows_every_section_from_the_sample_output(page: Path, output: Path) -> None:
    text = page.read_text(encoding="utf-8")
    labeled = read_labeled(output, SAMPLE_DATE)
    for heading in ("Sentiment over time", "Label distributions", "Negative documents", "Routing volume per team",
                    "Dead-letter reasons", "Model versions and evaluation"):
        assert heading in text
    for source in ("email", "review", "social"):
        assert f'data-chart="sentiment-{source}"' in text
    for chart in ("labels-sentiment", "labels-topic", "labels-intent", "labels-spam", "negative_topic",
                  "negative_intent", "routing", "dead-letter"):
        assert f'data-chart="{chart}"' in text
    negative = labeled[labeled["sentiment"] == "negative"]
    top_topic = negative["topic"].value_counts().sort_index().sort_values(ascending=False, kind="stable").index[0]
    example = negative[negative["topic"] == top_topic].sort_values("topic_score", ascending=False)["text"].iloc[0]
    assert f"<h3>{escape(top_topic)}</h3><blockquote>{escape(example[:280])}" in text
    for team, count in labeled["team"].value_counts().items():
        assert f"<title>{team}: {count}</title>" in text
    assert "parse/binary" in text and "clean/empty_text" in text and "parse/invalid_json" in text
    assert "tiny-test@0.0.1" in text and "semeval2017_test" in text and "accuracy 0.712" in text
    assert f"<b>{len(labeled)}</b>documents labeled" in text and "<b>3</b>dead letters" in text
    assert not re.search(r"\b(src|href)\s*=|<script|@import|url\(", text), "the page must not fetch anything"


def test_texts_from_the_data_are_escaped() -> None:
    aggregates = pd.DataFrame([{"metric": "negative_topic", "source": "email", "event_date": None, "task": "topic",
                                "label": "<b>billing</b>", "count": 1, "share": 1.0, "mean_score": 0.9, "rank": 1,
                                "date": SAMPLE_DATE}])
    html = render_html(aggregates, [SAMPLE_DATE], {"<b>billing</b>": [
        {"source": "email", "text": "<script>alert('x')</script> & more"}]}, {})
    assert "<script" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html
    assert "<b>billing</b>" not in html


def test_a_report_of_one_date_names_it_once() -> None:
    """The figures of a one-date report said ``"dates": [d, d]``, its artifact ``d .. d`` and its title ``d to d``."""
    aggregates = pd.DataFrame(columns=["metric", "source", "event_date", "task", "label", "count", "share",
                                       "mean_score", "rank", "date"])
    assert key_figures(aggregates, [SAMPLE_DATE])["dates"] == [SAMPLE_DATE]
    assert key_figures(aggregates, ["2026-11-18", "2026-11-19", "2026-11-20"])["dates"] == ["2026-11-18",
                                                                                             "2026-11-20"]
    assert f"<h1>Undertone report: {SAMPLE_DATE}</h1>" in render_html(aggregates, [SAMPLE_DATE], {}, {})


def test_chromium_draws_the_charts_without_console_errors(page: Path, chromium: str,
                                                          tmp_path: Path) -> None:
    html = page
    probed = tmp_path / "probed.html"
    probed.write_text(html.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    dom = run_chromium(chromium, tmp_path / "profile-dom", f"--window-size={WINDOW_WIDTH},1000",
                       "--virtual-time-budget=3000", "--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                       .replace("&amp;", "&"))
    assert probe["errors"] == []
    assert len(probe["charts"]) >= 11
    height = int(probe["height"]) + 20
    shot = tmp_path / "report.png"
    screenshot = run_chromium(chromium, tmp_path / "profile-shot", f"--window-size={WINDOW_WIDTH},{height}",
                              f"--screenshot={shot}", html.as_uri())
    assert "Uncaught" not in screenshot.stderr
    image = Image.open(shot).convert("RGB")
    assert image.size == (WINDOW_WIDTH, height)
    for chart in probe["charts"]:
        assert chart["width"] > 100 and chart["height"] > 20, chart
        box = (int(chart["x"]), int(chart["y"]), int(chart["x"] + chart["width"]), int(chart["y"] + chart["height"]))
        region = image.crop(box)
        pixels = list(region.getdata())
        bars = sum(max(pixel) - min(pixel) > 60 for pixel in pixels) / len(pixels)  # saturated: bars, not text
        colours = len(set(pixels))
        assert bars > 0.01 and colours >= 3, (chart["name"], bars, colours)


def test_daily_refreshes_aggregates_and_publishes_the_report(prefect_harness, tiny_bundle: Path,
                                                             tmp_path: Path) -> None:
    day = "2026-11-19"
    daily_flow(str(SAMPLES / "by_date"), str(tmp_path), date=day, model_dir=str(tiny_bundle))
    aggregates = read_aggregates(tmp_path, day, day)
    labeled = read_labeled(tmp_path, day)
    sentiment = aggregates[(aggregates["metric"] == "label") & (aggregates["task"] == "sentiment")]
    assert sentiment.groupby(["source", "label"])["count"].sum().to_dict() == labeled.groupby(
        ["source", "sentiment"]).size().to_dict()
    report = tmp_path / "_reports" / f"undertone-{day}.html"
    assert report.is_file() and "Undertone report" in report.read_text(encoding="utf-8")
    artifact = Artifact.get(f"undertone-report-{day}")
    assert artifact is not None
    assert f"| documents labeled | {len(labeled)} |" in artifact.data and str(report) in artifact.data
    assert "| dead letters | 1 |" in artifact.data
    assert f"| logical dates | {day} |" in artifact.data


def test_a_missing_output_root_is_an_error_not_an_empty_report(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no output root"):
        write_report(tmp_path / "typo", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()
