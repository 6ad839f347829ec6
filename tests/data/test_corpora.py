"""Corpora: the Shakespeare markdown reduction, the split rule, user files and their errors."""

import re
import sysconfig

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.data.corpora import (
    SPLITS,
    Corpus,
    Document,
    list_corpora,
    load_corpus,
    play_to_lines,
    split_by_hash,
    split_by_lines,
    split_documents,
)
from arlm.errors import ConfigError, DataError

PLAY = """# A Play

## ACT I

### SCENE I. A room.

_Enter HAMLET and HORATIO, with many
Attendants_

**HAMLET**$
To be, or not to be: that is the question:$
_\\[Aside]_$
Whether 'tis nobler in the mind to suffer\\--

**HORATIO**$
[To HAMLET]_$
My lord, _\\[Censorinus,]_ I came$
SONG.$
Hey nonny$

_Exeunt_

1\\. A lively flourish of Trumpets.$
2\\. Then, two Judges.

BISHOP

**OF WINCHESTER**$
'GONERIL.'
O, O, O,
""".replace("$\n", "  \n")  # "$" marks markdown's two-space line break


# ------------------------------------------------------------------------------------ shakespeare
def test_play_markdown_keeps_only_spoken_lines():
    assert play_to_lines(PLAY) == [
        "To be, or not to be: that is the question:",
        "Whether 'tis nobler in the mind to suffer--",
        "My lord, I came",
        "Hey nonny",
        "'GONERIL.'",
        "O, O, O,",
    ]


def test_multiline_direction_ends_at_blank_line_even_without_closing_marker():
    md = "_Enter a lord who\nnever closes\n\n**LORD**\nSpeak.\n"
    assert play_to_lines(md) == ["Speak."]


def test_shakespeare_has_38_plays_split_three_ways():
    corpus = load_corpus("shakespeare")
    assert len(corpus.documents("all")) == 38
    sizes = {s: len(corpus.documents(s)) for s in SPLITS}
    assert all(n >= 1 for n in sizes.values())
    assert sum(sizes.values()) == 38
    names = [set(d.name for d in corpus.documents(s)) for s in SPLITS]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_shakespeare_lines_are_plain_speech():
    corpus = load_corpus("shakespeare")
    lines = corpus.lines("all")
    assert len(lines) > 100_000
    markup = [x for x in lines if re.search(r"\*\*|_|^#|\\|\[|\]", x)]
    assert markup == []
    hamlet = next(d for d in corpus.documents("all") if d.name == "tragedies/hamlet").text
    assert "To be, or not to be: that is the question:" in hamlet.split("\n")
    assert "HAMLET" not in hamlet.split("\n")  # speaker headings are dropped
    assert "Exit" not in hamlet.split("\n")


# ----------------------------------------------------------------------------------------- split
names = st.lists(st.text(min_size=1, max_size=12), min_size=3, max_size=40, unique=True)


@given(names)
@settings(max_examples=60, deadline=None)
def test_hash_split_is_a_partition_with_no_empty_split(doc_names):
    docs = [Document(n, "x") for n in doc_names]
    splits = split_by_hash(docs)
    assert all(splits[s] for s in SPLITS)
    got = sorted(d.name for s in SPLITS for d in splits[s])
    assert got == sorted(doc_names)


def test_hash_split_is_stable_when_a_document_is_added():
    docs = [Document(f"doc{i}", "x") for i in range(200)]
    before = {d.name: s for s, ds in split_by_hash(docs).items() for d in ds}
    after = {d.name: s for s, ds in split_by_hash([*docs, Document("new", "y")]).items()
             for d in ds}
    assert all(after[n] == before[n] for n in before)


def test_hash_split_is_about_80_10_10():
    docs = [Document(f"file{i}.py", "x") for i in range(3000)]
    sizes = {s: len(ds) for s, ds in split_by_hash(docs).items()}
    assert 0.77 < sizes["train"] / 3000 < 0.83
    assert 0.08 < sizes["val"] / 3000 < 0.12
    assert 0.08 < sizes["test"] / 3000 < 0.12


@given(st.lists(st.text(alphabet="ab \t", max_size=6), min_size=0, max_size=60))
@settings(max_examples=80, deadline=None)
def test_line_split_is_contiguous_and_keeps_every_nonempty_line(lines):
    doc = Document("f.txt", "\n".join(lines))
    splits = split_by_lines(doc)
    joined = "\n".join(d.text for s in SPLITS for d in splits[s])
    assert [x for x in joined.split("\n") if x.strip()] == [x for x in lines if x.strip()]
    if sum(1 for x in lines if x.strip()) >= 3:
        assert all(splits[s] for s in SPLITS)


def test_line_split_is_80_10_10_in_order():
    doc = Document("f.txt", "\n".join(f"line {i}" for i in range(100)))
    splits = split_documents([doc])
    assert splits["train"][0].text.split("\n")[-1] == "line 79"
    assert splits["val"][0].text.split("\n") == [f"line {i}" for i in range(80, 90)]
    assert splits["test"][0].text.split("\n")[0] == "line 90"


# ------------------------------------------------------------------------------------ user files
def test_single_file_is_split_by_lines_and_all_is_the_whole_file(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("".join(f"sentence {i}  \n\n" for i in range(50)))
    corpus = load_corpus(str(path))
    assert corpus.lines("all") == [f"sentence {i}" for i in range(50)]
    parts = [corpus.lines(s) for s in SPLITS]
    assert all(parts)
    assert [x for part in parts for x in part] == corpus.lines("all")


def test_tiny_file_has_no_val_split(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("one line\nand another\n")
    corpus = load_corpus(str(path))
    assert corpus.lines("train") == ["one line", "and another"]
    with pytest.raises(DataError, match="no val split"):
        corpus.lines("val")
    with pytest.raises(ConfigError, match="unknown split"):
        corpus.lines("dev")


def test_folder_is_read_recursively_in_sorted_order(tmp_path):
    for name in ["b.txt", "a/z.txt", "a/c.md", "c.txt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"text of {name}\n")
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\0\0\1")
    (tmp_path / ".hidden").write_text("secret")
    corpus = load_corpus(str(tmp_path))
    assert [d.name for d in corpus.documents("all")] == ["a/c.md", "a/z.txt", "b.txt", "c.txt"]
    assert corpus.text("all") == "\n".join(f"text of {n}" for n in ["a/c.md", "a/z.txt", "b.txt",
                                                                     "c.txt"])


def test_glob_selects_files(tmp_path):
    for i in range(4):
        (tmp_path / f"part{i}.txt").write_text(f"part {i}\n")
    (tmp_path / "notes.md").write_text("not me\n")
    corpus = load_corpus(str(tmp_path / "*.txt"))
    assert len(corpus.documents("all")) == 4
    assert "not me" not in corpus.text("all")


def test_folder_with_split_named_files_uses_them(tmp_path):
    (tmp_path / "wiki.train.tokens").write_text("a b c\nd e\n")
    (tmp_path / "wiki.valid.tokens").write_text("f g\n")
    (tmp_path / "wiki.test.tokens").write_text("h\n")
    corpus = load_corpus(str(tmp_path))
    assert corpus.lines("train") == ["a b c", "d e"]
    assert corpus.lines("val") == ["f g"]
    assert corpus.lines("test") == ["h"]


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "neither a built-in corpus"),
    (lambda p: p.write_text("  \n\n"), "is empty"),
    (lambda p: p.write_bytes(b"caf\xe9 au lait"), "offset 3"),
])
def test_bad_files_raise_clear_errors(tmp_path, setup, message):
    path = tmp_path / "in.txt"
    setup(path)
    with pytest.raises(DataError, match=message):
        load_corpus(str(path))


def test_latin1_file_loads_with_its_encoding(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"caf\xe9 au lait\n")
    assert load_corpus(str(path), encoding="latin-1").lines("all") == ["café au lait"]


def test_folder_without_text_and_glob_without_match(tmp_path):
    (tmp_path / "blob").write_bytes(b"\0\1\2")
    with pytest.raises(DataError, match="no text files"):
        load_corpus(str(tmp_path))
    with pytest.raises(DataError, match="no file matches"):
        load_corpus(str(tmp_path / "*.txt"))


def test_lines_drop_blank_lines_and_trailing_whitespace():
    corpus = Corpus("c", [Document(f"d{i}", f"  a {i} \t\n\n   \nb{i}") for i in range(5)], "test")
    for line in corpus.lines("all"):
        assert line and line == line.rstrip()
    assert len(corpus.lines("all")) == 10


def test_fingerprint_follows_content():
    docs = [Document(f"d{i}", f"text {i}") for i in range(5)]
    a, b = Corpus("c", docs, "x"), Corpus("c", list(docs), "x")
    changed = Corpus("c", [*docs[:4], Document("d4", "text 4!")], "x")
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != changed.fingerprint


# ------------------------------------------------------------------------------------- built-ins
def test_pystdlib_is_the_standard_library_sorted():
    corpus = load_corpus("pystdlib")
    docs = corpus.documents("all")
    names = [d.name for d in docs]
    assert names == sorted(names)
    assert "os.py" in names and "json/__init__.py" in names
    assert not any("site-packages" in n for n in names)
    assert sum(len(d.text) for d in docs) > 10_000_000
    assert sysconfig.get_paths()["stdlib"]  # the source of the corpus exists on this machine


def test_pydocs_is_prose_topics():
    corpus = load_corpus("pydocs")
    docs = corpus.documents("all")
    assert len(docs) > 50
    assert any("assert" in d.name for d in docs)
    assert all(corpus.documents(s) for s in SPLITS)


def test_list_corpora_names_and_sizes():
    listed = dict(list_corpora())
    assert set(listed) == {"shakespeare", "pystdlib", "pydocs", "digits"}
    assert "38 documents" in listed["shakespeare"]


@pytest.mark.parametrize("encoding", ["nosuch-enc", "", "utf\x00"])
def test_an_unknown_encoding_is_refused_before_reading(tmp_path, encoding):
    path = tmp_path / "a.txt"
    path.write_text("plain")
    for spec in (str(path), "shakespeare"):  # a built-in corpus ignores it, but it is still a mistake
        with pytest.raises(ConfigError, match=r"unknown encoding .*utf-8"):
            load_corpus(spec, encoding=encoding)
