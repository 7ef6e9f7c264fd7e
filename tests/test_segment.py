"""Sentence split + in-place reassembly keeps formatting (paper 4.3)."""

import pytest

from xlexp.generate.segment import PysbdSplitter, reassemble, segment, sentences

TRICKY = {
    "paragraphs": "Honey keeps for years. It is acidic.\n\nBees make it from nectar.",
    "bullets": (
        "Keep three copies:\n\n- two at home\n- one off-site, e.g. in the cloud\n"
        "  - nested: a second disk\n\nTest them."
    ),
    "numbered": "Steps:\n1. Rinse it. Dry it well.\n2) Oil it.\n10. Store it dry.",
    "headers": "# Title\n\n## Why it works\nDr. Smith explains it. See Fig. 2 for details.\n",
    "code": "Run this:\n\n```python\nprint('Hello. World.')\nx = 1\n```\n\nThen check the output.",
    "urls": "Read more at https://example.com/a.b?c=d. Or visit www.example.org\nhttps://example.com/only-url",
    "emphasis": (
        "This is **very important**. Use *italics* sparingly.\n> Quoted text here. Another one."
    ),
    "crlf": "Line one.\r\nLine two. Line three.\r\n",
    "trailing": "No newline at end. Really",
    "nested_numbered": (
        "1. Prepare the pan. It must be dry.\n   1. Wipe it, e.g. with paper.\n   2. Heat it.\n"
        "      - Not too hot!\n2. Cook.\n"
    ),
    "tilde_fence": (
        "Example:\n~~~\n  indented code. Not a sentence.\n\n# not a heading\n~~~\n"
        "Done. Mr. Lee agrees."
    ),
    "hard_break_tabs": (
        "First line.  \nSecond line, after a hard break.\n\tTabbed text. More.\n\n\n"
    ),
    "table": (
        "Compare them:\n\n| Metal | Use. Note |\n|:------|------:|\n"
        "| Iron | Tools, e.g. nails. Cheap. |\n| Gold  | 42 |\n\nDone."
    ),
    "table_no_outer_pipes": (
        "Name | Role\n--- | :---:\nAnna | Writes the code.\nBen | Tests it, i.e. breaks it.\n"
    ),
    "table_escaped_pipe_and_code": (
        "| Op | Meaning |\n|---|---|\n| `a \\| b` | Either one. |\n\n"
        "```\n| not | a table |\n|---|---|\n```\n"
    ),
    "not_a_table": "Use a | b in shell.\n---\nA rule above. Pipes | here too.",
    "mixed": (
        "# Title\n\nIntro, e.g. this. Dr. Who said so.\n\n"
        "## List\n1. One.\n   - sub, i.e. nested.\n\n"
        "```\nx = 'a. b.'\n```\nSee https://example.com/x.y. Bye."
    ),
}


@pytest.fixture(scope="module")
def splitter():
    return PysbdSplitter()


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_identity_round_trip_is_byte_identical(splitter, name):
    text = TRICKY[name]
    segs = segment(text, splitter)
    assert "".join(s["text"] for s in segs) == text
    assert reassemble(segs, sentences(segs)) == text


def test_structure_survives_real_translation(splitter):
    text = TRICKY["bullets"] + "\n\n" + TRICKY["code"]
    segs = segment(text, splitter)
    out = reassemble(segs, [f"<{i}>" for i, _ in enumerate(sentences(segs))])
    assert out.count("\n") == text.count("\n")
    assert "\n- <" in out and "\n  - <" in out  # bullets and nesting kept
    assert "print('Hello. World.')" in out  # code is not translated
    assert "```python\n" in out


def test_abbreviations_do_not_split(splitter):
    segs = segment("Dr. Smith uses tools, e.g. hammers. They work.", splitter)
    assert sentences(segs) == ["Dr. Smith uses tools, e.g. hammers.", "They work."]


def test_markup_and_urls_are_literal(splitter):
    segs = segment("## Heading text\n- item one\nhttps://example.com/x", splitter)
    assert sentences(segs) == ["Heading text", "item one"]


def test_multiline_translation_cannot_break_layout(splitter):
    segs = segment("- one.\n- two.", splitter)
    assert reassemble(segs, ["eins\n\nnote", "zwei"]) == "- eins note\n- zwei"


TABLE = (
    "Metals:\n\n"
    "| Metal | What it is used for |\n"
    "|:------|:-------------------:|\n"
    "| Iron  | Tools. Bridges too. |\n"
    "| Gold  | 79 |\n"
    "\nThat is all."
)


def test_table_cells_are_translated_and_the_grid_stays(splitter):
    segs = segment(TABLE, splitter)
    assert sentences(segs) == [
        "Metals:",
        "Metal",
        "What it is used for",
        "Iron",
        "Tools.",
        "Bridges too.",
        "Gold",
        "That is all.",
    ]
    translated = reassemble(segs, [f"T{i}" for i, _ in enumerate(sentences(segs))])
    lines = translated.split("\n")
    source = TABLE.split("\n")
    assert (
        lines[3] == source[3] == "|:------|:-------------------:|"
    )  # the alignment row, untouched
    assert (
        lines[2] == "| T1 | T2 |" and lines[4] == "| T3  | T4 T5 |" and lines[5] == "| T6  | 79 |"
    )
    for out, src in zip(lines, source, strict=True):
        assert out.count("|") == src.count("|")  # every pipe where it was, no column added or lost


def test_a_pipe_in_a_cell_translation_is_escaped(splitter):
    segs = segment("| A | B |\n|---|---|\n| x or y | z |\n- a | b", splitter)
    out = reassemble(segs, ["A", "B", "x | y", "z", "a | b"])
    assert out.split("\n")[2] == "| x \\| y | z |"  # still two columns
    assert out.split("\n")[3] == "- a | b"  # outside a table a pipe is text


def test_pipes_outside_tables_stay_in_the_sentence(splitter):
    segs = segment(TRICKY["not_a_table"], splitter)
    assert "Use a | b in shell." in sentences(segs)

class _Recording:
    """The real pysbd splitter, recording how long each input it was given was."""

    def __init__(self):
        from xlexp.generate.segment import PysbdSplitter

        self.inner, self.sizes = PysbdSplitter(), []

    def split(self, text: str) -> list[str]:
        self.sizes.append(len(text))
        return self.inner.split(text)


_LONG = (
    "The quick brown fox jumps over the lazy dog near the river bank. "
    "Dr. Smith said e.g. that it was fine! Why not? "
)


def test_a_very_long_line_is_split_in_bounded_pieces_in_seconds():
    import time

    from xlexp.generate import segment as seg

    text = (_LONG * 2000)[:200_000]  # one line; unbounded, pysbd takes minutes on this
    splitter = _Recording()
    started = time.time()
    segments = seg.segment(text, splitter)
    assert time.time() - started < 60
    assert "".join(s["text"] for s in segments) == text
    assert max(splitter.sizes) <= seg.MAX_SPLIT_CHARS


def test_bounded_pieces_keep_the_sentences_an_unbounded_split_finds(monkeypatch):
    from xlexp.generate import segment as seg

    text = (_LONG * 200)[:20_000]
    bounded = seg.sentences(seg.segment(text, _Recording()))
    monkeypatch.setattr(seg, "MAX_SPLIT_CHARS", 10**9)
    assert bounded == seg.sentences(seg.segment(text, _Recording()))
    assert "".join(seg.bounded_pieces("x" * 5000, 2000)) == "x" * 5000  # no space: hard cuts
