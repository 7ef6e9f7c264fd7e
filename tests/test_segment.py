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
    """The real pysbd splitter, recording each input it was given and how long it was."""

    def __init__(self):
        self.inner, self.sizes, self.inputs = PysbdSplitter(), [], []

    def split(self, text: str) -> list[str]:
        self.sizes.append(len(text))
        self.inputs.append(text)
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


# ---- what segment() promises, stated exactly (a mutation run found each unguarded) ----


def test_segments_of_a_text_with_a_table_exactly(splitter):
    text = (
        "Press it. Then press X\n\n| Part | Note |\n|---|---|\n| Tools. Bridges too. |   |\nDone."
    )
    assert segment(text, splitter) == [
        {"text": "Press it.", "translate": True},
        {"text": " ", "translate": False},
        {"text": "Then press X", "translate": True},  # the line's last char is its text
        {"text": "\n\n| ", "translate": False},
        {"text": "Part", "translate": True, "cell": True},  # cells, not sentences of a line
        {"text": " | ", "translate": False},
        {"text": "Note", "translate": True, "cell": True},
        {"text": " |\n|---|---|\n| ", "translate": False},  # the alignment row is layout
        {"text": "Tools.", "translate": True, "cell": True},  # a cell's sentences, one by one
        {"text": " ", "translate": False},  # only what is translated is marked as a cell
        {"text": "Bridges too.", "translate": True, "cell": True},
        {"text": " |   |\n", "translate": False},  # an empty cell is layout
        {"text": "Done.", "translate": True},  # no empty literal before or after the text
    ]


def test_inline_html_stays_in_its_sentence(splitter):
    # pysbd's cleaning would drop the tags, and the sentence would no longer be found in place
    segs = segment("Use a <b>bold</b> tag. Next.", splitter)
    assert sentences(segs) == ["Use a <b>bold</b> tag.", "Next."]


def test_the_splitter_sees_each_line_as_written_but_its_line_break():
    from xlexp.generate.segment import MAX_SPLIT_CHARS

    full = "A" + " word" * ((MAX_SPLIT_CHARS - 1) // 5)
    full += "x" * (MAX_SPLIT_CHARS - len(full))  # exactly the bound: one call, not cut
    text = f"- Hard break.  \r\nTrailing tab\t\n{full}\n"
    rec = _Recording()
    segment(text, rec)
    assert rec.inputs == ["Hard break.  ", "Trailing tab\t", full]


class _Fixed:
    """A splitter that answers fixed pieces, as a model-based one may: a piece of blanks, or a
    piece that is not in its input (text it altered)."""

    def __init__(self, *pieces: str):
        self.pieces = list(pieces)

    def split(self, text: str) -> list[str]:
        return self.pieces


@pytest.mark.parametrize(
    "text, pieces, expected",
    [
        # a blank piece is skipped, the sentences after it are still found
        ("One. Two.", ["One.", "  ", "Two."], [("One.", True), (" ", False), ("Two.", True)]),
        # an altered piece: the rest of the line is one sentence, nothing is lost
        ("One. Two.", ["One.", "Zwei."], [("One.", True), (" Two.", True)]),
        ("One. 42", ["One.", "x"], [("One.", True), (" 42", False)]),  # no letter: layout
        ("One.  ", ["One."], [("One.", True), ("  ", False)]),  # trailing blanks are layout
    ],
)
def test_a_splitter_that_skips_or_alters_text_loses_nothing(text, pieces, expected):
    segs = segment(text, _Fixed(*pieces))
    assert [(s["text"], s["translate"]) for s in segs] == expected
    assert "".join(s["text"] for s in segs) == text


@pytest.mark.parametrize(
    "content, limit, pieces",
    [
        ("x" * 20, 20, ["x" * 20]),  # as long as the bound: not cut
        ("Abcd. Efgh. Ijkl. Mn", 20, ["Abcd. Efgh. Ijkl. Mn"]),
        # after the window's last sentence end
        ("Abcd. Efgh. Ijkl. Mnopqrstuvwxyz", 20, ["Abcd. Efgh. Ijkl. ", "Mnopqrstuvwxyz"]),
        ("Hello there. General Kenobi", 20, ["Hello there. ", "General Kenobi"]),
        # a sentence end in the window's first quarter (6 of 24) would make a tiny piece:
        # after the window's last space instead
        ("Abcd. efghij klmnopqrstuvwxyz", 24, ["Abcd. efghij ", "klmnopqrstuvwxyz"]),
        ("Abcde. fghij klmnopqrstuvwxyz", 24, ["Abcde. ", "fghij klmnopqrstuvwxyz"]),  # 7 > 6
        ("ab cd ef gh ij kl mn op qr", 20, ["ab cd ef gh ij kl ", "mn op qr"]),
        (" " + "x" * 30, 20, [" ", "x" * 20, "x" * 10]),  # the only space is the first char
        ("x" * 45, 20, ["x" * 20, "x" * 20, "x" * 5]),  # no space at all: hard cuts
    ],
)
def test_bounded_pieces_cut_at_the_last_sentence_end_or_space(content, limit, pieces):
    from xlexp.generate.segment import bounded_pieces

    assert bounded_pieces(content, limit) == pieces
    assert all(len(p) <= limit for p in pieces) and "".join(pieces) == content


def _cell_lines(text: str) -> set[int]:
    """The lines whose text is segmented as table cells."""
    lines, offset = set(), 0
    for seg in segment(text, PysbdSplitter()):
        if seg.get("cell"):
            lines.add(text.count("\n", 0, offset))
        offset += len(seg["text"])
    return lines


@pytest.mark.parametrize(
    "text, rows",
    [
        ("| a | b |\n|---|---|\n| c | d |\nplain | text\n", {0, 2, 3}),  # GFM: a pipe continues
        ("| a | b |\n|---|---|", {0}),  # no body, no line after
        ("a | b\n- | -\nc | d\n", {0, 2}),  # the smallest alignment row
        ("|---|---|\n| a | b |\nc | d", set()),  # no header above the alignment row
        ("Title\n|---|---|\n| a | b |\n", set()),  # a header needs a pipe
        ("- c | d\n|---|---|\n| e | f |\n", set()),  # a list item is not a header
        ("| a | b |\n|---|---|\n- c | d\n| e | f |\n", {0}),  # a list item ends the table
        ("| a | b |\n|---|---|\n- | -\n| c | d |\n", {0}),  # ...even one like an alignment row
        ("| a | b |\n|---|---|\n\nc | d\n", {0}),  # so does a blank line
        ("| a |\n|---|\n\n| b |\n|---|\n| c |\n", {0, 3, 5}),  # two tables
        ("| a | b |\n|---|---|\n```\nx | y\n```\n", {0}),  # a table just before code
        ("```\n| x | y |\n|---|---|\n```\n| a |\n|---|\n| c |\n", {4, 6}),  # just after code
        ("```\nx\n```|\n|---|\n| a |\n", set()),  # a fence line never heads a table
        ("| a |\n|---|\n```sh | x\n| b |\n```|\n| c |\n", {0}),  # nor continues one
    ],
)
def test_which_lines_are_table_rows(text, rows):
    assert _cell_lines(text) == rows


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_any_translation_keeps_the_lines_code_and_table_grid(splitter, name):
    # The translator may answer anything, line breaks and pipes included: the layout stays.
    text = TRICKY[name]
    segs = segment(text, splitter)
    out = reassemble(segs, [f"T{i}\nmore | text\r\n" for i, _ in enumerate(sentences(segs))])
    src_lines, out_lines = text.splitlines(), out.splitlines()
    assert len(out_lines) == len(src_lines)
    fence = False
    for src, line in zip(src_lines, out_lines, strict=True):
        if src.lstrip().startswith(("```", "~~~")) or fence:
            assert line == src  # code and its fences untouched
        if src.lstrip().startswith(("```", "~~~")):
            fence = not fence
        elif not fence and src.strip().startswith("|"):
            assert line.replace("\\|", "").count("|") == src.replace("\\|", "").count("|")
