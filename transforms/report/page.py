"""The analyst report: one self-contained HTML page built from the daily aggregates.

Figures come from ``OUTPUT/aggregates`` (a date without that table, written before aggregates existed,
is aggregated in memory), example texts from the labeled partitions, evaluation figures from the model
registry. The page has no script and a Content-Security-Policy that forbids every fetch, so it opens
offline and can be mailed or attached as it is.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from models.bundle import METRICS_FILE, read_metrics
from models.registry import REGISTRY_FILE, REPO_ROOT, load_registry
from transforms.aggregates import (
    COLUMNS,
    LABELED_INPUTS,
    compute_aggregates,
    read_aggregates,
    read_dead_letter,
    read_labeled,
)
from transforms.report.svg import bar_chart, stacked_columns

EXAMPLES_PER_TOPIC = 3
TOP_N = 8
EXAMPLE_CHARS = 280
STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:14px;margin:16px 0 4px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}td.n{text-align:right}
.figures span{display:inline-block;margin:0 24px 8px 0}.figures b{font-size:20px;display:block}
blockquote{margin:4px 0 4px 12px;padding:2px 8px;border-left:3px solid #d62728;font-size:13px;color:#444}
.empty{color:#888;font-style:italic}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def partition_dates(output: str | Path) -> list[str]:
    """Every logical date with a labeled, dead-letter or aggregates partition."""
    root = Path(output)
    folders = [*root.glob("labeled/source=*/date=*"), *root.glob("dead_letter/date=*"), *root.glob("aggregates/date=*")]
    return sorted({folder.name.removeprefix("date=") for folder in folders if folder.is_dir()})


def load_aggregates(output: str | Path, dates: list[str]) -> pd.DataFrame:
    """The aggregates of ``dates``; a date without a stored table is aggregated in memory."""
    if not dates:
        return pd.DataFrame(columns=[*COLUMNS, "date"])
    stored = read_aggregates(output, dates[0], dates[-1])
    missing = [date for date in dates if date not in set(stored["date"])]
    computed = [compute_aggregates(read_labeled(output, date, LABELED_INPUTS), read_dead_letter(output, date))
                .to_pandas().assign(date=date) for date in missing]
    frames = [frame for frame in (stored, *computed) if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else stored


def _totals(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Counts summed over logical dates and every column not in ``keys`` (shares do not add across groups)."""
    return frame.groupby(keys, dropna=False, as_index=False)["count"].sum()


def negative_examples(output: str | Path, dates: list[str], topics: list[str]) -> dict[str, list[dict[str, Any]]]:
    """For each topic, the negative documents most confidently about it (source and text)."""
    frames = [read_labeled(output, date, ("text",)) for date in dates]
    frames = [frame for frame in frames if {"sentiment", "topic", "text"} <= set(frame.columns)]
    if not frames or not topics:
        return {}
    labeled = pd.concat([frame[["source", "text", "sentiment", "topic", "topic_score"]] for frame in frames])
    negative = labeled[labeled["sentiment"] == "negative"].sort_values("topic_score", ascending=False)
    return {topic: negative.loc[negative["topic"] == topic, ["source", "text"]].head(EXAMPLES_PER_TOPIC)
            .to_dict("records") for topic in topics}


def model_figures(versions: list[str], registry: Path = REGISTRY_FILE) -> dict[str, dict[str, dict[str, float]]]:
    """Evaluation figures per model version: the bundle's ``metrics.json`` when the registry knows the bundle,
    else the registry's summary; an unregistered version has none."""
    models = load_registry(registry).get("models", {})
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for version in versions:
        entry = models.get(version)
        if not entry:
            continue
        folder = Path(entry["path"]) if Path(entry["path"]).is_absolute() else REPO_ROOT / entry["path"]
        evaluation = (read_metrics(folder).get("evaluation", {}) if (folder / METRICS_FILE).is_file()
                      else entry.get("metrics", {}))
        figures[version] = {name: {key: round(value, 4) for key, value in report.items() if isinstance(value, float)}
                            for name, report in evaluation.items()}
    return figures


def date_span(dates: list[str]) -> list[str]:
    """The first and last of the report's (sorted) dates, each once: a report of one date names it once."""
    return list(dict.fromkeys((dates[0], dates[-1]))) if dates else []


def key_figures(aggregates: pd.DataFrame, dates: list[str]) -> dict[str, Any]:
    """The headline numbers: documents, dead letters, negative share per source, top negative topic."""
    labels = aggregates[aggregates["metric"] == "label"]
    sentiment = _totals(labels[labels["task"] == "sentiment"], ["source", "label"])
    per_source = sentiment.groupby("source")["count"].sum()
    negative = sentiment[sentiment["label"] == "negative"].set_index("source")["count"]
    topics = _totals(aggregates[aggregates["metric"] == "negative_topic"], ["label"]).sort_values(
        ["count", "label"], ascending=[False, True])
    models = aggregates[aggregates["metric"] == "model_version"]
    return {
        "dates": date_span(dates),
        "documents": int(models["count"].sum()),
        "dead_letter": int(aggregates.loc[aggregates["metric"] == "dead_letter", "count"].sum()),
        "negative_share": {source: round(float(negative.get(source, 0) / total), 4)
                           for source, total in per_source.items()},
        "top_negative_topic": topics["label"].iloc[0] if len(topics) else None,
        "model_versions": sorted(models["label"].unique()),
    }


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{cell:g}</td>' if isinstance(cell, int | float) else
                                     f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _empty(what: str) -> str:
    return f'<p class="empty">{escape(what)}</p>'


def sentiment_section(labels: pd.DataFrame) -> str:
    """Share of each sentiment per event day, one chart per source."""
    sentiment = labels[(labels["task"] == "sentiment") & labels["event_date"].notna()]
    if sentiment.empty:
        return _empty("No sentiment was labeled in these dates.")
    parts = []
    for source, rows in _totals(sentiment, ["source", "event_date", "label"]).groupby("source"):
        table = rows.pivot_table(index="event_date", columns="label", values="count", fill_value=0).sort_index()
        table = table.tail(90)
        order = [label for label in ("negative", "neutral", "positive") if label in table] + sorted(
            set(table.columns) - {"negative", "neutral", "positive"})
        totals = table.sum(axis=1)
        series = {label: (table[label] / totals).tolist() for label in order}
        days = [str(day) for day in table.index]
        parts.append(f"<h3>{escape(str(source))}</h3>"
                     + stacked_columns(f"sentiment-{source}", days, series, totals.astype(int).tolist()))
    return "".join(parts)


def distribution_section(labels: pd.DataFrame) -> str:
    """Documents per label for every task, all sources, with a per-source share table."""
    parts = []
    for task, rows in labels[labels["task"] != "team"].groupby("task"):
        totals = _totals(rows, ["label"]).sort_values(["count", "label"], ascending=[False, True]).head(TOP_N * 2)
        by_source = _totals(rows, ["source", "label"])
        by_source["share"] = by_source["count"] / by_source.groupby("source")["count"].transform("sum")
        parts.append(f"<h3>{escape(str(task))}</h3>"
                     + bar_chart(f"labels-{task}", list(zip(totals["label"], totals["count"], strict=True)))
                     + _table(["source", "label", "documents", "share"],
                              [[r.source, r.label, int(r.count), f"{r.share:.1%}"] for r in by_source.itertuples()]))
    return "".join(parts) or _empty("No labels in these dates.")


def negative_section(aggregates: pd.DataFrame, examples: dict[str, list[dict[str, Any]]]) -> str:
    """The most frequent topics (and intents) of negative documents, with example texts."""
    parts = []
    for metric, title in (("negative_topic", "topics"), ("negative_intent", "intents")):
        totals = _totals(aggregates[aggregates["metric"] == metric], ["label"]).sort_values(
            ["count", "label"], ascending=[False, True]).head(TOP_N)
        if totals.empty:
            continue
        parts.append(f"<h3>Top {title} of negative documents</h3>"
                     + bar_chart(metric, list(zip(totals["label"], totals["count"], strict=True))))
        if metric == "negative_topic":
            for topic in totals["label"]:
                quotes = "".join(f"<blockquote>{escape(row['text'][:EXAMPLE_CHARS])}"
                                 f"{'…' if len(row['text']) > EXAMPLE_CHARS else ''} "
                                 f"<small>({escape(row['source'])})</small></blockquote>"
                                 for row in examples.get(topic, []))
                parts.append(f"<h3>{escape(topic)}</h3>{quotes}")
    return "".join(parts) or _empty("No negative documents with a topic in these dates.")


def routing_section(labels: pd.DataFrame) -> str:
    """Documents per team when intent was labeled (routing volume)."""
    teams = labels[labels["task"] == "team"]
    if teams.empty:
        return _empty("Intent was not labeled in these dates (run with --tasks including intent).")
    totals = _totals(teams, ["label"]).sort_values(["count", "label"], ascending=[False, True])
    by_source = _totals(teams, ["source", "label"])
    return (bar_chart("routing", list(zip(totals["label"], totals["count"], strict=True)))
            + _table(["source", "team", "documents"], [[r.source, r.label, int(r.count)]
                                                       for r in by_source.itertuples()]))


def dead_letter_section(aggregates: pd.DataFrame) -> str:
    """Dead-letter records per source and reason."""
    dead = _totals(aggregates[aggregates["metric"] == "dead_letter"], ["source", "label"]).sort_values(
        ["count", "source", "label"], ascending=[False, True, True])
    if dead.empty:
        return _empty("No dead letters in these dates.")
    return (bar_chart("dead-letter", [(f"{r.source} {r.label}", int(r.count)) for r in dead.itertuples()])
            + _table(["source", "stage/reason", "records"], [[r.source, r.label, int(r.count)]
                                                             for r in dead.itertuples()]))


def model_section(aggregates: pd.DataFrame, figures: dict[str, dict[str, dict[str, float]]]) -> str:
    """Each model version's documents and its evaluation figures."""
    versions = _totals(aggregates[aggregates["metric"] == "model_version"], ["label"])
    rows = []
    for version in versions.itertuples():
        evaluations = figures.get(version.label)
        if not evaluations:
            rows.append([version.label, int(version.count), "not in the model registry", ""])
        for name, values in (evaluations or {}).items():
            rows.append([version.label, int(version.count), name,
                         ", ".join(f"{key} {value:.3f}" for key, value in values.items())])
    return _table(["model version", "documents", "evaluation", "figures"], rows) if rows else _empty(
        "No labeled documents in these dates.")


def render_html(aggregates: pd.DataFrame, dates: list[str], examples: dict[str, list[dict[str, Any]]],
                figures: dict[str, dict[str, dict[str, float]]]) -> str:
    """The whole page as a string."""
    key = key_figures(aggregates, dates)
    labels = aggregates[aggregates["metric"] == "label"]
    span = " to ".join(key["dates"]) or "no dates"
    negative = ", ".join(f"{source} {share:.0%}" for source, share in key["negative_share"].items()) or "n/a"
    sections = [
        ("Sentiment over time (by event day)", sentiment_section(labels)),
        ("Label distributions", distribution_section(labels)),
        ("Negative documents: topics, intents and examples", negative_section(aggregates, examples)),
        ("Routing volume per team", routing_section(labels)),
        ("Dead-letter reasons", dead_letter_section(aggregates)),
        ("Model versions and evaluation", model_section(aggregates, figures)),
    ]
    body = "".join(f"<section><h2>{escape(title)}</h2>{html}</section>" for title, html in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>Undertone report {escape(span)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Undertone report: {escape(span)}</h1>"
        f'<div class="figures"><span><b>{key["documents"]}</b>documents labeled</span>'
        f'<span><b>{key["dead_letter"]}</b>dead letters</span>'
        f"<span><b>{escape(negative)}</b>negative share</span>"
        f'<span><b>{escape(str(key["top_negative_topic"] or "n/a"))}</b>top negative topic</span></div>'
        f"{body}<p><small>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the aggregates of logical dates "
        f"{escape(span)}.</small></p></body></html>"
    )


def write_report(output: str | Path, html_path: str | Path, start: str | None = None, end: str | None = None,
                 registry: Path = REGISTRY_FILE) -> dict[str, Any]:
    """Render the report of logical dates ``start``..``end`` (default: all) to ``html_path``, atomically.

    Returns the key figures and the path. A local ``output`` that does not exist is an error, not an
    empty report: it is a mistyped path far more often than a deployment that has labeled nothing yet.
    """
    if "://" not in str(output) and not Path(output).is_dir():
        raise FileNotFoundError(f"no output root at {output}: point --output at the folder `undertone run` wrote")
    dates = [date for date in partition_dates(output)
             if (start is None or date >= start) and (end is None or date <= end)]
    aggregates = load_aggregates(output, dates)
    topics = _totals(aggregates[aggregates["metric"] == "negative_topic"], ["label"]).sort_values(
        ["count", "label"], ascending=[False, True]).head(TOP_N)["label"].tolist()
    versions = sorted(aggregates.loc[aggregates["metric"] == "model_version", "label"].unique())
    page = render_html(aggregates, dates, negative_examples(output, dates, topics), model_figures(versions, registry))
    target = Path(html_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, target)
    return {**key_figures(aggregates, dates), "path": str(target)}
