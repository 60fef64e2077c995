"""Rebuild ``samples/`` from ``../shared/data``: a small, deterministic slice of each source.

Run from the repository root: ``python samples/_make_samples.py`` (the ``_`` keeps it out of runs). It copies a few raw
SpamAssassin messages (plain, HTML-only, iso-8859), bundles three into an mbox, takes
SST-2 dev sentences as review rows and SemEval-2016 tweets as social posts (with
``created_at`` spread over three days), and adds the malformed records that the run must
survive: an invalid JSON line, an empty post and a gzip file saved as ``.eml``.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.datasets import detokenize_ptb

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parents[1] / "shared" / "data"
EMAILS = DATA / "email" / "spamassassin"
FIRST_DAY = datetime(2026, 11, 18, 8, 0, tzinfo=UTC)

SINGLE_EMAILS = [
    "ham/00001.7c53336b37003a9286aba55d2945844c",
    "ham/00002.9c4069e25e1ef370c078db7ee85ff9ac",
    "ham/00007.37a8af848caae585af4fe35779656d55",  # iso-8859-1
    "ham/00009.371eca25b0169ce5cb4f71d3e07b9e2d",  # iso-8859-1
    "ham/00020.d10651e31fcb92630c6229ec773cfe26",
    "spam/00001.7848dde101aa985090474a91ec93fcf0",  # HTML only
    "spam/00008.dfd941deb10f5eed78b1594b131c9266",  # HTML only
    "spam/00012.381e4f512915109ba1e0853a7a8407b2",
]
MBOX_EMAILS = [
    "ham/00003.860e3c3cee1b42ead714c5c874fe25f7",
    "ham/00004.864220c5b6930b209cc287c361c99af1",
    "ham/00005.bf27cdeaf0b8c4647ecd61b1d09da613",
]


def spread(index: int, count: int) -> str:
    """Timestamps spread evenly over three days."""
    return (FIRST_DAY + timedelta(hours=72 * index / count)).isoformat().replace("+00:00", "Z")


def make_emails(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in SINGLE_EMAILS:
        kind, file_name = name.split("/")
        shutil.copyfile(EMAILS / name, folder / f"{kind}-{file_name.split('.')[0]}")  # raw, no extension
    # SpamAssassin files already start with their mbox "From " envelope line.
    with (folder / "list-archive.mbox").open("wb") as mbox:
        for name in MBOX_EMAILS:
            raw = (EMAILS / name).read_bytes()
            mbox.write(raw if raw.endswith(b"\n") else raw + b"\n")
            mbox.write(b"\n")
    # A compressed message saved under the wrong name: not an email any parser can read.
    (folder / "forwarded-by-mistake.eml").write_bytes(gzip.compress((EMAILS / MBOX_EMAILS[0]).read_bytes(), mtime=0))


def make_reviews(folder: Path, count: int = 36) -> None:
    folder.mkdir(parents=True)
    with (DATA / "sentiment" / "sst2" / "dev.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:count]
    with (folder / "movie-reviews.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["review_id", "product", "review_text", "created_at"])
        for index, row in enumerate(rows):
            writer.writerow([f"sst2-dev-{index:04d}", "movie", detokenize_ptb(row["sentence"]), spread(index, count)])


def make_social(folder: Path, count: int = 36) -> None:
    folder.mkdir(parents=True)
    lines = (DATA / "sentiment" / "semeval2017" / "twitter-2016test-A.tsv").read_text(encoding="utf-8").splitlines()
    with (folder / "posts.jsonl").open("w", encoding="utf-8") as out:
        for index, line in enumerate(lines[:count]):
            tweet_id, _label, text = line.split("\t")[:3]
            if text.startswith('"') and text.endswith('"'):
                text = text[1:-1]
            out.write(json.dumps({"id": tweet_id, "text": text, "created_at": spread(index, count),
                                  "retweets": 0}) + "\n")
            if index == 10:
                out.write('{"id": "broken-1", "text": "this line was cut off by the expor\n')
            if index == 20:
                out.write(json.dumps({"id": "empty-1", "text": "   ", "created_at": spread(index, count)}) + "\n")


if __name__ == "__main__":
    for sub in ("email", "reviews", "social"):
        shutil.rmtree(ROOT / sub, ignore_errors=True)
    make_emails(ROOT / "email")
    make_reviews(ROOT / "reviews")
    make_social(ROOT / "social")
    print(f"samples written under {ROOT}")
