"""Sentence split and in-place reassembly (paper 4.3), so formatting survives translation.

A response becomes a list of segments: literal text (markdown prefixes such as bullets,
numbers and heading marks, blank lines, whitespace between sentences, code blocks, bare URLs)
and sentences to translate. Joining the segments gives the original back byte for byte;
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
                f"splitter.model: cannot load SaT model {model!r} ({e}). Offline, point splitter.model "
                "(and splitter.tokenizer) at local directories, or use splitter=pysbd."
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


def segment(text: str, splitter: Splitter) -> list[dict]:
    """Segments of `text`; `"".join(s["text"] for s in segments) == text`."""
    segments: list[dict] = []
    in_code = False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_code = not in_code
            segments.append({"text": line, "translate": False})
            continue
        body = line.rstrip("\r\n")
        newline = line[len(body) :]
        if in_code or not body.strip():
            segments.append({"text": line, "translate": False})
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
            out.append(_LINE_BREAK.sub(" ", next(it).strip()))
        else:
            out.append(seg["text"])
    return "".join(out)
