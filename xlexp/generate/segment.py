"""Sentence split and in-place reassembly (paper 4.3), so formatting survives translation.

A response becomes a list of segments: literal text (markdown prefixes such as bullets,
numbers and heading marks, blank lines, whitespace between sentences, code blocks, bare URLs,
the pipes and alignment row of markdown tables) and sentences to translate (a table's cells
are translated one by one). Joining the segments gives the original back byte for byte;
joining with each sentence replaced by its translation gives the translated response with
the same layout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from xlexp.registry import Registry

_FENCE = re.compile(r"^\s*(```|~~~)")
# Markdown that starts a line: indentation, quote marks, headings, bullets, numbered items.
_LINE_PREFIX = re.compile(r"^(\s*(?:>\s*)*(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+)?)")
_URL = re.compile(r"^\s*(?:https?://|www\.)\S+\s*$")
_LETTER = re.compile(r"[^\W\d_]")
# A GFM table's alignment row: cells of dashes with optional colons, at least one pipe.
_TABLE_ALIGN = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)+\|?\s*$|^\s*\|\s*:?-+:?\s*\|\s*$")
# A cell border: a pipe that is not escaped (`\|` is a pipe inside a cell's text).
_CELL_BORDER = re.compile(r"(?<!\\)\|")
# Every character str.splitlines() breaks on, with the whitespace around it.
_LINE_BREAK = re.compile(r"\s*[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+\s*")


class Splitter(Protocol):
    def split(self, text: str) -> list[str]: ...


SPLITTERS: Registry[Any] = Registry("splitter")  # splitter.kind -> class with from_config(cfg)


@SPLITTERS.register("pysbd")
class PysbdSplitter:
    """Rule-based, offline (handles abbreviations such as "e.g." and "Dr.")."""

    def __init__(self, language: str = "en"):
        import pysbd

        self._seg = pysbd.Segmenter(language=language, clean=False)

    @classmethod
    def from_config(cls, cfg: Any) -> PysbdSplitter:
        return cls()

    def split(self, text: str) -> list[str]:
        return self._seg.segment(text)


@SPLITTERS.register("sat")
class SaTSplitter:
    """Segment any Text (wtpsplit), as in the paper."""

    def __init__(self, model: str, tokenizer: str | None = None, threshold: float | None = None):
        from wtpsplit import SaT

        if not tokenizer and (Path(model) / "tokenizer_config.json").exists():
            tokenizer = model  # a local model dir that ships its tokenizer: no hub default
        kwargs = {"tokenizer_name_or_path": tokenizer} if tokenizer else {}
        try:
            self._sat = SaT(model, **kwargs)
        except OSError as e:  # hub download impossible (offline, no cache)
            raise RuntimeError(
                f"splitter.model: cannot load SaT model {model!r} ({e}). Offline, "
                "point splitter.model (and splitter.tokenizer) at local directories, "
                "or use splitter=pysbd."
            ) from e
        self.threshold = threshold

    @classmethod
    def from_config(cls, cfg: Any) -> SaTSplitter:
        return cls(cfg.model, cfg.tokenizer, cfg.threshold)

    def split(self, text: str) -> list[str]:
        kwargs = {"threshold": self.threshold} if self.threshold is not None else {}
        return list(self._sat.split(text, **kwargs))


def make_splitter(cfg: Any) -> Splitter:
    """The splitter `splitter.kind` names."""
    return SPLITTERS.get(cfg.kind, "splitter.kind").from_config(cfg)


def _translatable(text: str) -> bool:
    return bool(_LETTER.search(text)) and not _URL.match(text)


# Splitters take time superlinear in their input (pysbd: 80k chars ~19 s, so a 2 MB line
# would take hours): a longer line is cut into pieces first, after a sentence end where the
# window has one, else at a space.
MAX_SPLIT_CHARS = 2000
# A period after a word of 4+ letters (not "Dr." or "e.g."), or ! ? and CJK stops; closing quotes.
_SENTENCE_END = re.compile(r"(?:(?<=[^\W\d_]{4})\.|[!?。！？])[\"')\]”’]*\s+")


def bounded_pieces(content: str, limit: int = MAX_SPLIT_CHARS) -> list[str]:
    """`content` cut into pieces of at most `limit` chars; `"".join(pieces) == content`."""
    pieces: list[str] = []
    start = 0
    while len(content) - start > limit:
        window = content[start : start + limit]
        ends = [m.end() for m in _SENTENCE_END.finditer(window)]
        cut = ends[-1] if ends and ends[-1] > limit // 4 else window.rfind(" ") + 1
        if cut <= 0:
            cut = limit  # no space at all: a hard cut
        pieces.append(content[start : start + cut])
        start += cut
    pieces.append(content[start:])
    return pieces


def _split_line(content: str, splitter: Splitter) -> list[dict]:
    """Sentences of one line, located in place; the gaps between them stay literal."""
    if len(content) > MAX_SPLIT_CHARS:
        return [seg for piece in bounded_pieces(content) for seg in _split_line(piece, splitter)]
    segments: list[dict] = []
    pos = 0
    for sentence in splitter.split(content):
        core = sentence.strip()
        if not core:
            continue
        start = content.find(core, pos)
        if start < 0:  # the splitter altered the text: keep the rest as one sentence
            break
        if start > pos:
            segments.append({"text": content[pos:start], "translate": False})
        segments.append({"text": core, "translate": _translatable(core)})
        pos = start + len(core)
    if pos < len(content):
        rest = content[pos:]
        segments.append({"text": rest, "translate": bool(rest.strip()) and _translatable(rest)})
    return segments


def _code_lines(lines: list[str]) -> set[int]:
    """Indices of the lines of fenced code blocks, their fences included."""
    code: set[int] = set()
    inside = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            inside = not inside
            code.add(i)
        elif inside:
            code.add(i)
    return code


def _opens_block(line: str) -> bool:
    """A list item, heading or quote: GFM ends a table there, and none starts there."""
    return bool(_LINE_PREFIX.match(line).group(1).strip())


def _table_lines(lines: list[str], code: set[int]) -> set[int]:
    """Indices of the lines that are rows of a markdown table (GFM): a header row with a pipe,
    the alignment row under it, and the rows with a pipe that follow up to a line without one
    or one that opens another block (a list item, heading or quote, as GFM ends a table there).
    Lines of code blocks (`code`) are never table rows."""
    rows: set[int] = set()
    for i in range(1, len(lines)):
        # An alignment row has no fence mark, so if it is code the line above is code too.
        if i - 1 in code or i - 1 in rows:
            continue
        header = lines[i - 1]
        if _TABLE_ALIGN.match(lines[i]) and "|" in header and not _opens_block(header):
            rows.update((i - 1, i))
            j = i + 1
            while j < len(lines) and j not in code and "|" in lines[j]:
                if _opens_block(lines[j]):
                    break
                rows.add(j)
                j += 1
    return rows


def _table_row(body: str, splitter: Splitter) -> list[dict]:
    """One table row: pipes and the spaces around each cell stay literal, each cell's text is
    split into sentences; the alignment row has no letters and stays literal as a whole."""
    cells = _CELL_BORDER.split(body)
    segments = _cell(cells[0], splitter)
    for cell in cells[1:]:
        segments.append({"text": "|", "translate": False})
        segments.extend(_cell(cell, splitter))
    return segments


def _cell(text: str, splitter: Splitter) -> list[dict]:
    if not text.strip():  # an empty cell's "" merges into the pipes around it
        return [{"text": text, "translate": False}]
    return [
        {**seg, "cell": True} if seg["translate"] else seg for seg in _split_line(text, splitter)
    ]


def segment(text: str, splitter: Splitter) -> list[dict]:
    """Segments of `text`; `"".join(s["text"] for s in segments) == text`."""
    segments: list[dict] = []
    lines = text.splitlines(keepends=True)
    code = _code_lines(lines)
    table = _table_lines(lines, code)
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        newline = line[len(body) :]
        if i in code or not body.strip():
            segments.append({"text": line, "translate": False})
            continue
        if i in table:
            segments.extend(_table_row(body, splitter))
            if newline:
                segments.append({"text": newline, "translate": False})
            continue
        prefix = _LINE_PREFIX.match(body).group(1)
        if prefix:
            segments.append({"text": prefix, "translate": False})
        segments.extend(_split_line(body[len(prefix) :], splitter))
        if newline:
            segments.append({"text": newline, "translate": False})
    return _merge_literals(segments)


def _merge_literals(segments: list[dict]) -> list[dict]:
    merged: list[dict] = []
    for seg in segments:
        if merged and not seg["translate"] and not merged[-1]["translate"]:
            merged[-1] = {"text": merged[-1]["text"] + seg["text"], "translate": False}
        else:
            merged.append(seg)
    return merged


def sentences(segments: list[dict]) -> list[str]:
    return [s["text"] for s in segments if s["translate"]]


def reassemble(segments: list[dict], translations: list[str]) -> str:
    """Put each translation in place of its sentence; literals are kept as they are."""
    it = iter(translations)
    out = []
    for seg in segments:
        if seg["translate"]:
            # A translation must not break the line structure around it; other spacing is
            # kept, so an identity translation gives the text back byte for byte.
            text = _LINE_BREAK.sub(" ", next(it).strip())
            if seg.get("cell"):  # a pipe the translator wrote must not open a new column
                text = _CELL_BORDER.sub(r"\\|", text)
            out.append(text)
        else:
            out.append(seg["text"])
    return "".join(out)
