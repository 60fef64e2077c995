"""A mixed, shuffled benchmark corpus from ``../shared/data``, written as the input files a team would have.

Emails are SpamAssassin messages copied as raw files (their Message-ID replaced by a bench id, so every
copy is a distinct document), reviews are SST-2 sentences in a CSV, tweets are SemEval-2016 test tweets in
JSON Lines. ``_corpus.json`` (skipped by ingest, like every ``_`` file) lists every document's
source and id in the shuffled arrival order that the baseline uses.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from models.datasets import read_semeval, read_sst2

MIX = {"email": 0.2, "review": 0.4, "social": 0.4}
"""Share of each source: a support team's day, mostly short posts and reviews, a fifth long emails."""
MESSAGE_ID = re.compile(rb"^message-id:[^\r\n]*(\r?\n[ \t][^\r\n]*)*\r?\n", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Item:
    source: str
    source_id: str
    payload: str | bytes


def sample_items(data_dir: Path, documents: int, seed: int = 7) -> list[Item]:
    """``documents`` distinct real documents in the ``MIX`` proportions.

    Up to 2,400 emails are distinct messages; beyond that (corpora over 12,000 documents) messages are drawn
    again, as distinct documents (own Message-ID) with a repeated text. Reviews and tweets are drawn without
    replacement (about 23,800 and 20,600 available: over 50,000 documents sampling fails); a tweet id the file
    repeats gets a suffix per repeat."""
    rng = random.Random(seed)
    counts = {source: round(documents * share) for source, share in MIX.items()}
    counts["social"] = documents - counts["email"] - counts["review"]
    mail = sorted(p for folder in ("ham", "spam") for p in (data_dir / "email" / "spamassassin" / folder).iterdir()
                  if p.is_file() and not p.name.startswith("."))
    sst2 = data_dir / "sentiment" / "sst2"
    reviews = [e.text for e in read_sst2(sst2 / "dev.tsv")]
    reviews += rng.sample([e.text for e in read_sst2(sst2 / "train.tsv", min_words=10)], counts["review"])
    tweets = read_semeval(data_dir / "sentiment" / "semeval2017" / "twitter-2016test-A.tsv")
    picked = rng.sample(mail, min(counts["email"], len(mail)))
    picked += rng.choices(mail, k=counts["email"] - len(picked))
    items = [Item("email", f"bench-{i}@undertone.invalid", path.read_bytes()) for i, path in enumerate(picked)]
    items += [Item("review", f"r{i}", text) for i, text in enumerate(reviews[: counts["review"]])]
    sampled = rng.sample(tweets, counts["social"])
    repeats = Counter(tweet_id for tweet_id, _ in sampled)  # the file repeats a few ids: those get a suffix
    seen: Counter[str] = Counter()
    for tweet_id, example in sampled:
        seen[tweet_id] += 1
        suffix = f"-{seen[tweet_id]}" if repeats[tweet_id] > 1 else ""
        items.append(Item("social", f"t{tweet_id}{suffix}", example.text))
    return items


def with_message_id(raw: bytes, message_id: str) -> bytes:
    """The message with its Message-ID header replaced (or added after an mbox ``From `` line)."""
    header = f"Message-ID: <{message_id}>\n".encode()
    stripped, found = MESSAGE_ID.subn(b"", raw, count=1)
    if not found and not raw.startswith(b"From "):
        return header + raw
    if stripped.startswith(b"From "):
        envelope, _, rest = stripped.partition(b"\n")
        return envelope + b"\n" + header + rest
    return header + stripped


def write_corpus(folder: Path, items: list[Item], copies: int = 1, seed: int = 7) -> dict:
    """Write ``copies`` of every item (distinct ids per copy), shuffled; returns the corpus description."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "emails").mkdir(exist_ok=True)
    order = [(copy, item) for copy in range(copies) for item in items]
    random.Random(seed).shuffle(order)
    documents = []
    with (folder / "reviews.csv").open("w", encoding="utf-8", newline="") as reviews, \
            (folder / "tweets.jsonl").open("w", encoding="utf-8") as tweets:
        table = csv.writer(reviews)
        table.writerow(["review_id", "review_text"])
        for copy, item in order:
            source_id = item.source_id if copy == 0 else f"c{copy}-{item.source_id}"
            if item.source == "email":
                name = f"{len(documents):06d}.eml"
                (folder / "emails" / name).write_bytes(with_message_id(item.payload, source_id))
                source_id = f"<{source_id}>"  # ingest keeps a Message-ID with its angle brackets
            elif item.source == "review":
                table.writerow([source_id, item.payload])
            else:
                tweets.write(json.dumps({"tweet_id": source_id, "tweet": item.payload}) + "\n")
            documents.append({"source": item.source, "source_id": source_id})
    description = {"documents": documents, "counts": {s: sum(d["source"] == s for d in documents) for s in MIX}}
    (folder / "_corpus.json").write_text(json.dumps(description) + "\n", encoding="utf-8")
    return description
