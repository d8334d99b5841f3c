"""Derive, validate and count the nerbatch sample data.

The hand-checked CoNLL files are the source of truth. This script
  * rewrites test.jsonl and test.parquet from test.conll,
  * validates every file in this folder (column count, IOB2 / IOB1 tags,
    JSONL/Parquet identical to test.conll, text.jsonl, sentences.txt),
  * prints the per-file counts used in README.md.

    .venv/bin/python sample_data/make_samples.py            # rewrite + check + counts
    .venv/bin/python sample_data/make_samples.py --check    # check + counts only
"""
import json
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
TYPES = ("PER", "ORG", "LOC", "MISC")
DOCSTART = "-DOCSTART- -X- -X- O"


def read_conll(path):
    """-> list of documents; a document is a list of sentences; a sentence is a list of 4-tuples."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n\n") and not text.endswith("\n\n\n"), f"{path.name}: must end with exactly one blank line"
    assert "\r" not in text, f"{path.name}: CR characters"
    docs = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if lines == [DOCSTART]:
            docs.append([])
            continue
        assert docs, f"{path.name}: sentence before the first -DOCSTART-"
        sent = []
        for line in lines:
            cols = line.split(" ")
            assert len(cols) == 4 and all(cols), f"{path.name}: not 4 columns: {line!r}"
            assert cols[0] != "-DOCSTART-", f"{path.name}: -DOCSTART- must be followed by a blank line"
            sent.append(tuple(cols))
        docs[-1].append(sent)
    assert all(docs), f"{path.name}: empty document"
    return docs


def check_tag(tag):
    assert tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:] in TYPES), f"bad tag {tag!r}"


def check_iob2(tags):
    for i, t in enumerate(tags):
        check_tag(t)
        if t.startswith("I-"):
            prev = tags[i - 1] if i else "O"
            assert prev != "O" and prev[2:] == t[2:], f"IOB2: {t} after {prev} in {tags}"


def check_iob1(tags):
    for i, t in enumerate(tags):
        check_tag(t)
        if t.startswith("B-"):
            prev = tags[i - 1] if i else "O"
            assert prev != "O" and prev[2:] == t[2:], f"IOB1: {t} after {prev} in {tags}"


def check_chunks(chunks):
    for i, c in enumerate(chunks):
        assert c == "O" or c[:2] in ("B-", "I-"), f"bad chunk tag {c!r}"
        if c.startswith("I-"):
            prev = chunks[i - 1] if i else "O"
            assert prev[2:] == c[2:], f"chunk {c} after {prev}"


def spans(tags, iob1=False):
    """Entity spans (type, start, end) for IOB2, or for IOB1 when iob1=True."""
    out, start, typ = [], None, None
    for i, t in enumerate(tags + ["O"]):
        begins = t.startswith("B-") or (t.startswith("I-") and t[2:] != typ)
        if (t == "O" or begins) and typ is not None:
            out.append((typ, start, i))
            typ = None
        if t != "O" and (begins or typ is None):
            start, typ = i, t[2:]
    return out


def test_records(docs):
    for d, doc in enumerate(docs):
        for n, sent in enumerate(doc):
            yield {"id": f"test-{d}-{n}", "tokens": [r[0] for r in sent], "tags": [r[3] for r in sent], "doc": d}


def write_derived(docs):
    recs = list(test_records(docs))
    with open(HERE / "test.jsonl", "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps({"id": r["id"], "tokens": r["tokens"], "tags": r["tags"], "source": "sample"},
                               ensure_ascii=False) + "\n")
    schema = pa.schema([("id", pa.string()), ("tokens", pa.list_(pa.string())),
                        ("tags", pa.list_(pa.string())), ("doc", pa.int32())])
    table = pa.Table.from_pylist(recs, schema=schema)
    pq.write_table(table, HERE / "test.parquet")


def check_derived(docs):
    want = list(test_records(docs))
    lines = (HERE / "test.jsonl").read_text(encoding="utf-8").splitlines()
    got = [json.loads(l) for l in lines]
    assert [{k: r[k] for k in ("id", "tokens", "tags")} for r in got] == \
           [{k: r[k] for k in ("id", "tokens", "tags")} for r in want], "test.jsonl differs from test.conll"
    assert all(set(r) == {"id", "tokens", "tags", "source"} and r["source"] == "sample" for r in got)
    table = pq.read_table(HERE / "test.parquet")
    assert str(table.schema.field("doc").type) == "int32" and table.schema.names == ["id", "tokens", "tags", "doc"]
    assert table.to_pylist() == want, "test.parquet differs from test.conll"


def check_text_files():
    recs = [json.loads(l) for l in (HERE / "text.jsonl").read_text(encoding="utf-8").splitlines()]
    assert recs and all(set(r) == {"id", "text"} and r["text"].strip() == r["text"] for r in recs)
    assert len({r["id"] for r in recs}) == len(recs), "text.jsonl: duplicate ids"
    lines = (HERE / "sentences.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "sentences.txt must end with a newline"
    for l in lines[:-1]:
        assert l and l == " ".join(l.split()), f"sentences.txt: bad spacing: {l!r}"
    return len(recs), len(lines) - 1


def stats(docs, iob1=False):
    c = Counter()
    for doc in docs:
        for sent in doc:
            c["tokens"] += len(sent)
            c["sentences"] += 1
            c["no-entity sentences"] += all(r[3] == "O" for r in sent)
            for typ, _, _ in spans([r[3] for r in sent], iob1):
                c[typ] += 1
    c["docs"] = len(docs)
    return c


def main():
    files = {"train.conll": False, "dev.conll": False, "test.conll": False, "train_iob1.conll": True}
    data = {name: read_conll(HERE / name) for name in files}
    for name, iob1 in files.items():
        for doc in data[name]:
            for sent in doc:
                (check_iob1 if iob1 else check_iob2)([r[3] for r in sent])
                check_chunks([r[2] for r in sent])
    adj = sum(1 for doc in data["train_iob1.conll"] for s in doc for r in s if r[3].startswith("B-"))
    assert adj >= 2, "train_iob1.conll needs at least two same-type adjacencies"
    if "--check" not in sys.argv:
        write_derived(data["test.conll"])
    check_derived(data["test.conll"])
    n_text, n_txt = check_text_files()

    cols = ["docs", "sentences", "tokens", *TYPES, "no-entity sentences"]
    print("| file | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, iob1 in files.items():
        c = stats(data[name], iob1)
        print(f"| {name} | " + " | ".join(str(c[k]) for k in cols) + " |")
    print(f"\ntext.jsonl: {n_text} records; sentences.txt: {n_txt} lines; "
          f"train_iob1.conll: {adj} B- tags (same-type adjacencies)")
    print("all checks passed")


if __name__ == "__main__":
    main()
