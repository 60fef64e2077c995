"""The registry, labeled-data readers on the real files, and the evaluate flow on a tiny model."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect.artifacts import Artifact

from flows.evaluate import evaluate_flow, evaluate_task
from models.bundle import read_bundle_spec
from models.classifier import Classifier
from models.datasets import Example, read_labeled
from models.fewshot import add_fewshot_task
from models.recipes import SST2_CANDIDATES, sentiment_data
from models.registry import bundle_on_this_machine, default_model_dir, load_registry, register


def test_register_and_promote(tiny_bundle: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    entry = register(tiny_bundle, path=registry)
    assert entry["default"] == "tiny-test@0.0.1"
    assert default_model_dir(registry) == tiny_bundle
    other = tmp_path / "other"
    other.mkdir()
    for name in ("bundle.json", "heads.safetensors"):
        (other / name).write_bytes((tiny_bundle / name).read_bytes())
    spec = json.loads((other / "bundle.json").read_text())
    spec["version"] = "0.0.2"
    (other / "bundle.json").write_text(json.dumps(spec))
    register(other, path=registry)
    assert load_registry(registry)["default"] == "tiny-test@0.0.1"
    register(other, promote=True, path=registry)
    assert default_model_dir(registry) == other
    assert set(load_registry(registry)["models"]) == {"tiny-test@0.0.1", "tiny-test@0.0.2"}


def test_a_worker_finds_the_runs_bundle_where_its_image_keeps_it(tiny_bundle: Path, tmp_path: Path) -> None:
    """The launcher names its own folder (``/home/me/undertone/models/...``); a Dataflow worker built from
    ``deploy/worker-gpu.Dockerfile`` has the same version registered under ``/opt/undertone``."""
    registry = tmp_path / "registry.json"
    register(tiny_bundle, path=registry)
    launcher_folder = tmp_path / "launcher" / "models" / "tiny"
    assert bundle_on_this_machine(launcher_folder, "tiny-test@0.0.1", registry) == tiny_bundle
    assert bundle_on_this_machine(tiny_bundle, "tiny-test@0.0.1", registry) == tiny_bundle
    with pytest.raises(FileNotFoundError, match=r"tiny-test@0\.0\.2 is neither at .* nor registered"):
        bundle_on_this_machine(launcher_folder, "tiny-test@0.0.2", registry)
    spec = json.loads((tiny_bundle / "bundle.json").read_text())
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("bundle.json", "heads.safetensors"):
        (copy / name).write_bytes((tiny_bundle / name).read_bytes())
    register(copy, path=registry)  # the version's entry now points at the copy
    (copy / "bundle.json").write_text(json.dumps({**spec, "version": "0.0.9"}))  # which now holds another version
    with pytest.raises(FileNotFoundError, match=r"tiny-test@0\.0\.1 is neither at"):
        bundle_on_this_machine(launcher_folder, "tiny-test@0.0.1", registry)


def test_a_new_version_written_over_a_folder_replaces_its_old_entry(tiny_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name in ("bundle.json", "heads.safetensors"):
        (folder / name).write_bytes((tiny_bundle / name).read_bytes())
    registry = tmp_path / "registry.json"
    register(folder, path=registry)
    spec = json.loads((folder / "bundle.json").read_text())
    spec["version"] = "0.0.2"
    (folder / "bundle.json").write_text(json.dumps(spec))
    entry = register(folder, path=registry)
    assert set(load_registry(registry)["models"]) == {"tiny-test@0.0.2"}
    assert entry["default"] == "tiny-test@0.0.2"


def test_read_labeled_understands_the_shared_formats(shared_data: Path) -> None:
    sst2 = read_labeled(shared_data / "sentiment" / "sst2" / "dev.tsv")
    assert len(sst2) == 872 and {e.label for e in sst2} == {"negative", "positive"}
    semeval = read_labeled(shared_data / "sentiment" / "semeval2017" / "twitter-2016test-A.tsv")
    assert len(semeval) > 20000 and {e.label for e in semeval} == {"negative", "neutral", "positive"}
    banking = read_labeled(shared_data / "intent" / "banking77" / "train.csv")
    assert len(banking) == 10003 and len({e.label for e in banking}) == 77


def test_read_labeled_takes_the_label_column_over_an_earlier_models_sentiment_column(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A scored export ``text,sentiment,label`` was evaluated against ``sentiment`` (file order), silently."""
    data = tmp_path / "scored.csv"
    data.write_text("text,sentiment,label\nlovely,negative,positive\nawful,positive,negative\n", encoding="utf-8")
    notes: list[str] = []
    assert [e.label for e in read_labeled(data, notes=notes)] == ["positive", "negative"]
    assert notes == [f"{data}: took column 'label' as the gold labels, not 'sentiment'; name another with "
                     "--label-column (and the text with --text-column)"]
    assert [e.label for e in read_labeled(data)] == ["positive", "negative"] and notes[0] in caplog.text
    caplog.clear()
    assert [e.label for e in read_labeled(data, label_column="sentiment")] == ["negative", "positive"]
    assert not caplog.text


def test_read_labeled_names_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty.csv'}: empty file"):
        read_labeled(tmp_path / "empty.csv")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("damaged.csv", "text,label\nnaïve café,positive\ncaf\udce9 au lait was cold,negative\n".encode(
        errors="surrogateescape"), "not UTF-8 text"),
    ("extra.csv", b"text,label\nlovely,positive\nawful, truly awful,negative\n", "Expected 2 fields in line 3, saw 3"),
    ("broken.jsonl", b'{"text": "lovely", "label": "positive"}\n{"text": "awful", \n', "Expected object or value"),
    ("damaged.tsv", "sentence\tlabel\nnaïve café\t1\ncaf\udce9 au lait was cold\t0\n".encode(
        errors="surrogateescape"), "not UTF-8 text"),
])
def test_read_labeled_names_the_file_it_could_not_read(tmp_path: Path, name: str, content: bytes,
                                                       message: str) -> None:
    """A damaged UTF-8 export, a CSV row with an unquoted comma or a cut JSONL line: the error did not say which
    file."""
    data = tmp_path / name
    data.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"{data}: ")) as error:
        read_labeled(data)
    assert message in str(error.value)


@pytest.mark.parametrize(("name", "content"), [
    ("gold.jsonl", '{"text": "lovely", "label": "positive"}\n{"text": "awful", "label": "negative"}\n'),
    ("gold.json", '[{"text": "lovely", "label": "positive"}, {"text": "awful", "label": "negative"}]'),
    ("gold.csv", "text,label\r\nlovely,positive\r\nawful,negative\r\n"),
    ("gold.tsv", "sentence\tlabel\nlovely\t1\nawful\t0\n"),
])
def test_read_labeled_reads_a_file_that_starts_with_a_utf8_bom(tmp_path: Path, name: str, content: str) -> None:
    """Excel's "CSV UTF-8" and Notepad write a byte-order mark: a JSONL file failed, an SST-2 TSV lost its layout."""
    data = tmp_path / name
    data.write_text(content, encoding="utf-8-sig")
    assert [(e.text, e.label) for e in read_labeled(data)] == [("lovely", "positive"), ("awful", "negative")]


def test_read_labeled_reads_a_csv_excel_saved_in_its_windows_code_page_with_a_note(tmp_path: Path) -> None:
    """Annotators label in Excel; its plain "CSV" is Windows-1252: the file was refused as not UTF-8."""
    data = tmp_path / "gold.csv"
    data.write_bytes("text,label\ncafé au lait was cold,negative\n“Perfect” crème brûlée,positive\n".encode("cp1252"))
    notes: list[str] = []
    assert [(e.text, e.label) for e in read_labeled(data, notes=notes)] == [
        ("café au lait was cold", "negative"), ("“Perfect” crème brûlée", "positive")]
    assert notes == [f"{data}: decoded as cp1252: the file is not UTF-8 and has no byte-order mark"]


def test_read_labeled_reads_the_first_sheet_of_a_workbook_as_text(tmp_path: Path) -> None:
    """Labeled sets are kept in spreadsheets; a 0/1 label column stays 0/1, as a CSV's does."""
    workbook = openpyxl.Workbook()
    workbook.active.append(["Text", "Label"])
    for row in (["lovely", 1], ["awful", 0], ["no label yet", None]):
        workbook.active.append(row)
    workbook.create_sheet("Notes").append(["text", "label"])
    data = tmp_path / "gold.xlsx"
    workbook.save(data)
    notes: list[str] = []
    assert [(e.text, e.label) for e in read_labeled(data, notes=notes)] == [("lovely", "1"), ("awful", "0")]
    assert notes == [f"{data}: skipped 1 of 3 rows without a text or a label"]


@pytest.mark.parametrize("name", ["gold.CSV", "gold.Jsonl", "gold.PARQUET"])
def test_read_labeled_takes_a_suffix_in_any_case(tmp_path: Path, name: str) -> None:
    """``data.CSV`` from a Windows share was refused as an unsupported file type."""
    frame = pd.DataFrame({"text": ["lovely", "awful"], "label": ["positive", "negative"]})
    data = tmp_path / name
    if name.lower().endswith(".csv"):
        frame.to_csv(data, index=False)
    elif name.lower().endswith(".jsonl"):
        frame.to_json(data, orient="records", lines=True)
    else:
        frame.to_parquet(data)
    assert [(e.text, e.label) for e in read_labeled(data)] == [("lovely", "positive"), ("awful", "negative")]


@pytest.mark.parametrize("name", ["gold.jsonl", "gold.json", "gold.parquet"])
def test_read_labeled_keeps_integer_labels_of_a_typed_file_with_a_missing_label(tmp_path: Path, name: str) -> None:
    """A 0/1 label column with one null came back as 0.0/1.0 from JSON and Parquet (CSV kept 0/1), so
    ``--label-map 0=negative,1=positive`` was refused and a few-shot task got labels ``1.0`` and ``0.0``."""
    table = pa.table({"text": ["lovely", "awful", "no label here"], "label": pa.array([1, 0, None], pa.int64())})
    data = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(table, data)
    else:
        rows = [json.dumps(row) for row in table.to_pylist()]
        data.write_text("\n".join(rows) if name.endswith(".jsonl") else f"[{', '.join(rows)}]", encoding="utf-8")
    notes: list[str] = []
    assert [(e.text, e.label) for e in read_labeled(data, notes=notes)] == [("lovely", "1"), ("awful", "0")]
    assert notes == [f"{data}: skipped 1 of 3 rows without a text or a label"]


def test_read_labeled_takes_a_label_as_written_without_the_spaces_around_it(tmp_path: Path) -> None:
    """``billing `` and ``billing`` became two labels of a few-shot task."""
    data = tmp_path / "examples.csv"
    data.write_text("text,label\nthe bill is wrong,billing\ncharged twice,billing \nparcel late, delivery\n",
                    encoding="utf-8")
    assert [e.label for e in read_labeled(data)] == ["billing", "billing", "delivery"]


def test_read_labeled_counts_the_emails_of_a_folder_it_could_not_read(tmp_path: Path) -> None:
    """An empty or binary file in a label folder was left out of the evaluation without a word."""
    for name, content in (("ham/1.eml", b"Subject: hi\n\nsee you at lunch\n"), ("ham/2.eml", b""),
                          ("spam/1.eml", b"Subject: win\n\nclaim your prize now\n"), ("spam/2.bin", b"\x00\x01\xff")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(content)
    notes: list[str] = []
    assert [e.label for e in read_labeled(tmp_path, notes=notes)] == ["ham", "spam"]
    assert notes == [f"{tmp_path}: skipped 2 of 4 files that are not readable emails "
                     "(ham/2.eml: no RFC-822 headers found)"]


def test_sentiment_recipe_can_use_sst2_only_as_negative_versus_positive_evidence(shared_data: Path) -> None:
    shipped_recipe = sentiment_data(shared_data, seed=13, sst2_phrases=2000)
    assert all(e.candidates is None for e in shipped_recipe.train + shipped_recipe.dev)
    data = sentiment_data(shared_data, seed=13, sst2_phrases=2000, sst2_binary=True)
    examples = data.train + data.dev
    phrases = [e for e in examples if e.candidates is not None]
    tweets = [e for e in examples if e.candidates is None]
    assert len(phrases) == 2000 and {e.candidates for e in phrases} == {SST2_CANDIDATES}
    assert {e.label for e in phrases} == set(SST2_CANDIDATES)
    assert {e.label for e in tweets} == {"negative", "neutral", "positive"} and len(tweets) > 20000


def test_evaluate_flow_reports_what_the_model_predicts(prefect_harness, tiny_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "eval.csv"
    rows = [("I love it", "positive"), ("awful", "negative"), ("it is Tuesday", "neutral"), ("great!", "positive")]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    report = evaluate_flow("sentiment", str(data), model_dir=str(tiny_bundle), output=str(tmp_path / "r.json"))
    predicted = [p["sentiment"].label for p in Classifier.load(tiny_bundle).predict([t for t, _ in rows])]
    expected_accuracy = sum(p == gold for p, (_, gold) in zip(predicted, rows, strict=True)) / len(rows)
    assert report["n"] == 4 and report["accuracy"] == expected_accuracy
    assert sum(map(sum, report["confusion_matrix"])) == 4
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"] == expected_accuracy


def test_evaluate_maps_numeric_labels_and_skips_rows_without_one(prefect_harness, tiny_bundle: Path, shared_data: Path,
                                                                  tmp_path: Path) -> None:
    """SST-2's 0/1 labels, as a CSV with one label missing: read as text (not 0.0/1.0) and renamed by the map."""
    dev = pd.read_csv(shared_data / "sentiment" / "sst2" / "dev.tsv", sep="\t", quoting=csv.QUOTE_NONE).head(40)
    numeric = tmp_path / "numeric.csv"
    pd.concat([dev, pd.DataFrame({"sentence": ["no label here"], "label": [None]})]).to_csv(numeric, index=False)
    named = tmp_path / "named.csv"
    dev.assign(label=dev["label"].map({0: "negative", 1: "positive"})).to_csv(named, index=False)
    mapped = evaluate_flow("sentiment", str(numeric), model_dir=str(tiny_bundle), only_gold_labels=True,
                           text_column="sentence", label_map={"0": "negative", "1": "positive"})
    reference = evaluate_flow("sentiment", str(named), model_dir=str(tiny_bundle), only_gold_labels=True,
                              text_column="sentence")
    assert mapped["n"] == 40 and {k: v for k, v in mapped.items() if k not in ("data", "notes")} == \
        {k: v for k, v in reference.items() if k != "data"}
    assert mapped["notes"] == [f"{numeric}: skipped 1 of 41 rows without a text or a label"]
    with pytest.raises(ValueError, match=r"labels \['0', '1'\] are not labels of task 'sentiment'.*--label-map"):
        evaluate_task.fn(str(tiny_bundle), "sentiment", str(numeric), text_column="sentence")
    (tmp_path / "empty.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no row with both a text and a label"):
        evaluate_task.fn(str(tiny_bundle), "sentiment", str(tmp_path / "empty.csv"))


def test_evaluating_a_task_whose_name_has_an_underscore_publishes_its_artifact(prefect_harness, tiny_bundle: Path,
                                                                                tmp_path: Path) -> None:
    """The README's few-shot example task is ``complaint_type``; Prefect refused the artifact key
    ``undertone-evaluate-complaint_type`` and the evaluation failed after it had measured."""
    examples = [Example(f"{word} problem number {i}", label) for i in range(4)
                for word, label in (("refund", "billing"), ("login", "access"))]
    bundle = add_fewshot_task(tiny_bundle, "complaint_type", examples, tmp_path / "with-complaints")
    gold = tmp_path / "gold.csv"
    gold.write_text("text,label\nrefund please,billing\ncannot login,access\n", encoding="utf-8")
    report = evaluate_flow("complaint_type", str(gold), model_dir=str(bundle))
    assert report["n"] == 2
    artifact = Artifact.get("undertone-evaluate-complaint-type")
    assert artifact is not None and "complaint_type" in artifact.data


def test_a_fewshot_task_named_like_an_output_column_is_refused_before_training(tiny_bundle: Path,
                                                                               tmp_path: Path) -> None:
    examples = [Example(f"text {i}", label) for i in range(4) for label in ("de", "en")]
    with pytest.raises(ValueError, match="task 'language' would write a column 'language'"):
        add_fewshot_task(tiny_bundle, "language", examples, tmp_path / "with-language")
    assert not (tmp_path / "with-language").exists()


def test_fewshot_bundles_get_distinct_versions_and_only_promote_changes_the_default(tiny_bundle: Path,
                                                                                    tmp_path: Path) -> None:
    """Two fewshot runs with one --task both became ``tiny-test@0.0.1+complaint_type``: the second, not promoted,
    replaced the first's registry entry, so the default model changed and both labeled rows as one version."""
    registry = tmp_path / "registry.json"
    first = [Example(f"{word} problem number {i}", label) for i in range(4)
             for word, label in (("refund", "billing"), ("login", "access"))]
    second = [Example(f"{word} issue {i}", label) for i in range(4)
              for word, label in (("invoice", "billing"), ("password", "access"))]
    one = add_fewshot_task(tiny_bundle, "complaint_type", first, tmp_path / "one")
    register(one, promote=True, path=registry)
    two = add_fewshot_task(tiny_bundle, "complaint_type", second, tmp_path / "two")
    entry = register(two, path=registry)
    one_version, two_version = (read_bundle_spec(b).model_version for b in (one, two))
    assert one_version != two_version and one_version.startswith("tiny-test@0.0.1+complaint_type.")
    assert entry["default"] == one_version and default_model_dir(registry) == one
    again = add_fewshot_task(tiny_bundle, "complaint_type", first, tmp_path / "again")
    assert read_bundle_spec(again).model_version == one_version  # the same command, the same version


def test_a_version_registered_with_other_weights_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    examples = [Example(f"{word} problem number {i}", label) for i in range(4)
                for word, label in (("refund", "billing"), ("login", "access"))]
    one = add_fewshot_task(tiny_bundle, "complaint_type", examples, tmp_path / "one", version="0.0.1+x")
    register(one, promote=True, path=registry)
    other_examples = [Example(f"{e.text} again", e.label) for e in examples]
    other = add_fewshot_task(tiny_bundle, "complaint_type", other_examples, tmp_path / "other", version="0.0.1+x")
    with pytest.raises(ValueError, match=r"tiny-test@0\.0\.1\+x is registered at .*one with other weights"):
        register(other, path=registry)
    assert load_registry(registry)["models"]["tiny-test@0.0.1+x"]["path"] == str(one)
