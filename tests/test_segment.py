"""Sentence split + in-place reassembly keeps formatting (paper 4.3)."""

import pytest

from xlexp.generate.segment import PysbdSplitter, reassemble, segment, sentences

TRICKY = {
    "paragraphs": "Honey keeps for years. It is acidic.\n\nBees make it from nectar.",
    "bullets": "Keep three copies:\n\n- two at home\n- one off-site, e.g. in the cloud\n  - nested: a second disk\n\nTest them.",
    "numbered": "Steps:\n1. Rinse it. Dry it well.\n2) Oil it.\n10. Store it dry.",
    "headers": "# Title\n\n## Why it works\nDr. Smith explains it. See Fig. 2 for details.\n",
    "code": "Run this:\n\n```python\nprint('Hello. World.')\nx = 1\n```\n\nThen check the output.",
    "urls": "Read more at https://example.com/a.b?c=d. Or visit www.example.org\nhttps://example.com/only-url",
    "emphasis": "This is **very important**. Use *italics* sparingly.\n> Quoted text here. Another one.",
    "crlf": "Line one.\r\nLine two. Line three.\r\n",
    "trailing": "No newline at end. Really",
    "nested_numbered": "1. Prepare the pan. It must be dry.\n   1. Wipe it, e.g. with paper.\n   2. Heat it.\n      - Not too hot!\n2. Cook.\n",
    "tilde_fence": "Example:\n~~~\n  indented code. Not a sentence.\n\n# not a heading\n~~~\nDone. Mr. Lee agrees.",
    "hard_break_tabs": "First line.  \nSecond line, after a hard break.\n\tTabbed text. More.\n\n\n",
    "mixed": "# Title\n\nIntro, e.g. this. Dr. Who said so.\n\n## List\n1. One.\n   - sub, i.e. nested.\n\n```\nx = 'a. b.'\n```\nSee https://example.com/x.y. Bye.",
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
