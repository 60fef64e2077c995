"""Rebuild ``samples/by_date/`` from ``samples/``: a few records per source and day, laid out by date.

The files live in ``samples/.by_date/`` and ``samples/by_date`` links to it: a run over all of
``samples/`` skips hidden folders and does not follow a link into the folder it walks, so it never reads these
copies twice.

Run from the repository root: ``python samples/.by_date/_split.py``. Posts and reviews go to the day
of their ``created_at`` (2026-11-18..20; later ones are left out), the first few per day, plus the
broken post lines that fall on that day; emails are assigned two per day (the last day's second one
is a gzip file saved as ``.eml``). Social and email use ``<source>/<YYYY-MM-DD>/``, reviews the hive
style ``reviews/date=<YYYY-MM-DD>/``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SAMPLES = ROOT.parent
DAYS = ("2026-11-18", "2026-11-19", "2026-11-20")
PER_DAY = 4
EMAILS = {DAYS[0]: ("ham-00001", "spam-00001"), DAYS[1]: ("ham-00002", "ham-00007"),
          DAYS[2]: ("ham-00009", "forwarded-by-mistake.eml")}


def split_posts() -> None:
    kept: dict[str, list[str]] = {day: [] for day in DAYS}
    day, valid = DAYS[0], dict.fromkeys(DAYS, 0)
    for line in (SAMPLES / "social" / "posts.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            post = json.loads(line)
        except json.JSONDecodeError:
            kept[day].append(line)  # a broken line belongs to the day of the line before it
            continue
        day = post["created_at"][:10]
        if day not in kept:
            continue
        if not post["text"].strip() or valid[day] < PER_DAY:
            kept[day].append(line)
            valid[day] += bool(post["text"].strip())
    for day, lines in kept.items():
        folder = ROOT / "social" / day
        folder.mkdir(parents=True)
        (folder / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def split_reviews() -> None:
    with (SAMPLES / "reviews" / "movie-reviews.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for day in DAYS:
        folder = ROOT / "reviews" / f"date={day}"
        folder.mkdir(parents=True)
        with (folder / "movie-reviews.csv").open("w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows([row for row in rows if row["created_at"].startswith(day)][:PER_DAY])


def split_emails() -> None:
    for day, names in EMAILS.items():
        folder = ROOT / "email" / day
        folder.mkdir(parents=True)
        for name in names:
            shutil.copyfile(SAMPLES / "email" / name, folder / name)


if __name__ == "__main__":
    for sub in ("email", "reviews", "social"):
        shutil.rmtree(ROOT / sub, ignore_errors=True)
    split_posts()
    split_reviews()
    split_emails()
    print(f"samples written under {ROOT}")
