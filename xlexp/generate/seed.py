"""Seed passages (paper section 4): English text from the shipped demo corpus, a local JSONL or
Parquet file, or a hub dataset streamed with `datasets` (CulturaX English in the paper).

`stream` is the I/O: rows in a seeded random order (a full shuffle for the small demo corpus, a
seeded shuffle buffer for streamed files and hub datasets, which never load whole). `take` is the
pure core: walk that stream and keep passages until `n` pass the length bounds and dedup, so a
corpus of millions is read only as far as needed (oversampling exactly as much as the filters
reject), bounded by `max_read`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from xlexp.errors import ConfigError
from xlexp.integrity import sha256_file
from xlexp.store import digest

# Why `take` passes over a row it read (each a key of its counts).
REJECT_REASONS = ("malformed", "not_text", "too_short", "too_long", "duplicate")
LOCAL_BUILDERS = {"jsonl": "json", "parquet": "parquet"}  # source -> `datasets` packaged builder
SOURCES = ("demo", *LOCAL_BUILDERS, "hf")


def _read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_rows(cfg: Any) -> list[dict]:
    """Every row of the demo corpus or of a local JSONL file, in file order (small inputs only)."""
    if cfg.source == "demo":
        return _read_jsonl(resources.files("xlexp").joinpath("data", "demo_seed.jsonl").read_text())
    with open(cfg.path) as f:
        return _read_jsonl(f.read())


def local_files(path: str | None) -> list[str]:
    """The files a `seed_data.path` (a file or a glob) names, sorted. A path that exists is a
    path, even when its name has glob characters (a folder `seeds v[1]`)."""
    if not path:
        return []
    expanded = os.path.expanduser(path)
    if os.path.isfile(expanded):
        return [expanded]
    return sorted(glob.glob(expanded))


# (path, size, mtime_ns, ctime_ns, inode) -> sha256: a file is hashed once per process.
_content_hashes: dict[tuple, str] = {}


def content_hash(path: str) -> str:
    """sha256 of a file's bytes (a replaced file with the same size and mtime still differs)."""
    st = os.stat(path)
    stamp = (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if stamp not in _content_hashes:
        _content_hashes[stamp] = sha256_file(path)
    return _content_hashes[stamp]


PARQUET_MAGIC = b"PAR1"  # the first and the last 4 bytes of every Parquet file


def check_local(cfg: Any) -> None:
    """Before any work: a local corpus exists, is not empty and, for JSONL, is UTF-8 with at
    least one row, for Parquet starts and ends like a Parquet file; else one line naming
    `seed_data.path`."""
    if cfg.source not in LOCAL_BUILDERS:
        return
    files = local_files(cfg.path)
    if not files:
        raise ConfigError("seed_data.path", f"no file matches {cfg.path!r}")
    for name in files:
        try:
            size = os.path.getsize(name)
            with open(name, "rb") as f:
                if cfg.source == "jsonl":
                    _check_jsonl_bytes(f, name)
                elif size == 0:
                    raise ConfigError("seed_data.path", f"{name} is empty")
                else:
                    _check_parquet_magic(f, name, size)
        except OSError as e:
            raise ConfigError("seed_data.path", f"cannot read {name} ({e.strerror})") from None


def _check_parquet_magic(f: Any, name: str, size: int) -> None:
    head = f.read(len(PARQUET_MAGIC))
    f.seek(max(size - len(PARQUET_MAGIC), 0))
    tail = f.read(len(PARQUET_MAGIC))
    if size < 2 * len(PARQUET_MAGIC) or head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        raise ConfigError(
            "seed_data.path",
            f"{name} is not a Parquet file (it does not start and end with {PARQUET_MAGIC!r}; "
            "a JSONL file takes seed_data=jsonl)",
        )


def _check_jsonl_bytes(f: Any, name: str) -> None:
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, nonblank = 0, False
    for block in iter(lambda: f.read(1 << 20), b""):
        try:
            text = decoder.decode(block)
        except UnicodeDecodeError as e:
            raise ConfigError(
                "seed_data.path", f"{name} is not UTF-8 (byte {offset + e.start})"
            ) from None
        nonblank = nonblank or bool(text.strip())
        offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ConfigError(
            "seed_data.path", f"{name} is not UTF-8 (it ends mid-character)"
        ) from None
    if not nonblank:
        raise ConfigError("seed_data.path", f"{name} is empty (no JSONL rows)")


def hf_token() -> str | None:
    """HF_TOKEN, or the token `huggingface-cli login` stored."""
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


def fingerprint(cfg: Any) -> list | None:
    """What identifies a local corpus beyond its path: each file's content hash, so a changed
    file is re-read even when its size and mtime were kept (`cp -p`)."""
    if cfg.source not in LOCAL_BUILDERS:
        return None
    return [[f, content_hash(f)] for f in local_files(cfg.path)]


def stream(cfg: Any, seed: int) -> Iterable[dict]:
    """Rows of the configured corpus in a seeded random order; hub and file sources stream."""
    if cfg.source == "demo":
        rows = load_rows(cfg)
        random.Random(seed).shuffle(rows)
        return rows
    import datasets

    if cfg.source in LOCAL_BUILDERS:
        files = local_files(cfg.path)
        if not files:
            raise FileNotFoundError(f"seed_data.path: no file matches {cfg.path!r}")
        try:
            if cfg.source == "jsonl":  # read by us, so a malformed line is a counted reject
                ds = datasets.IterableDataset.from_generator(
                    _jsonl_rows, gen_kwargs={"files": files}
                )
            else:
                # `datasets` reads data_files as glob patterns: escape them, these are paths.
                data_files = [glob.escape(f) for f in files]
                ds = datasets.load_dataset(
                    LOCAL_BUILDERS[cfg.source], data_files=data_files, split="train", streaming=True
                )
        except Exception as e:  # not JSONL / not Parquet, unreadable
            raise RuntimeError(
                f"seed_data.path: cannot read {cfg.path!r} as {cfg.source} "
                f"({type(e).__name__}: {e})"
            ) from e
    elif cfg.source == "hf":
        ds = _open_hub(cfg)
    else:
        raise ValueError(f"seed_data.source: unknown source {cfg.source!r} ({', '.join(SOURCES)})")
    return _named_errors(ds.shuffle(seed=seed, buffer_size=cfg.shuffle_buffer), cfg)


MALFORMED = "__malformed__"  # a stream row standing for a line that is not a JSON object


def _jsonl_rows(files: list[str]) -> Iterator[dict]:
    """Rows of JSONL files; a line that is not a JSON object becomes `{MALFORMED: "file:line"}`
    (counted by `take`, with its line number) instead of stopping the run."""
    for name in files:
        with open(name, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                # One column holding the row as JSON: `datasets` infers no schema across rows.
                yield {
                    "json": json.dumps(row) if isinstance(row, dict) else None,
                    "where": f"{name}:{n}",
                }


def _named_errors(rows: Iterable[dict], cfg: Any) -> Iterator[dict]:
    """A stream that fails later (a bad file among many, the hub dropping mid-read) names the
    key."""
    key, what = ("seed_data.name", cfg.name) if cfg.source == "hf" else ("seed_data.path", cfg.path)
    try:
        for row in rows:
            if cfg.source == "jsonl":  # unwrap `_jsonl_rows`
                row = (
                    json.loads(row["json"])
                    if row["json"] is not None
                    else {MALFORMED: row["where"]}
                )
            yield row
    except Exception as e:
        raise RuntimeError(
            f"{key}: reading {what!r} failed midway ({type(e).__name__}: {e})"
        ) from e


def _open_hub(cfg: Any) -> Any:
    import datasets

    try:
        return datasets.load_dataset(
            cfg.name, cfg.config, split=cfg.split, streaming=True, token=hf_token()
        )
    except Exception as e:  # offline, unreachable, gated without access, unknown name/config
        raise RuntimeError(
            f"seed_data.name: cannot stream {cfg.name!r} (config {cfg.config!r}, "
            f"split {cfg.split!r}) from the HF hub ({type(e).__name__}: {e}). "
            + ("It is gated: accept its terms on the hub and set HF_TOKEN. " if cfg.gated else "")
            + "Offline, use seed_data=jsonl or seed_data=parquet with a local copy "
            "(seed_data.path)."
        ) from e


def passage_id(row: dict, text: str, id_field: str) -> str:
    """The row's own id, else one derived from the text (stable whatever the stream order)."""
    value = row.get(id_field)
    return str(value) if value not in (None, "") else f"seed-{digest(text, n=12)}"


def shard_of(passage: str, shards: int) -> int:
    """The shard a passage id belongs to: a stable hash of the id (never of the stream order, so
    a shard's content does not depend on how the corpus was read)."""
    return int.from_bytes(hashlib.sha256(passage.encode()).digest()[:8], "big") % shards


@dataclass(frozen=True)
class Share:
    """The part of the seed set one generation shard works on: of the passages at stream
    positions [start, seed_data.n), those whose id hashes to `index` of `of`. The whole set is
    `Share()`; a top-up round's fresh seeds are `Share(start=n_before)`."""

    of: int = 1
    index: int = 0
    start: int = 0

    def holds(self, position: int, passage: str) -> bool:
        if position < self.start:
            return False
        return self.of == 1 or shard_of(passage, self.of) == self.index

    @property
    def whole(self) -> bool:
        return self == Share()


def take(rows: Iterable[dict], cfg: Any, share: Share | None = None) -> tuple[list[dict], dict]:
    """The first `cfg.n` rows that pass the length bounds and dedup, sorted by id, plus counts.

    Each kept passage carries `order`, its position among the kept in the seeded stream: later
    stages assign languages by it, so a passage gets the same language whatever shard or top-up
    round it is generated in. With a `share`, the whole stream is still read and counted (the
    seed set is global) but only the share's passages are kept; the others are counted as
    `elsewhere`. Dedup keeps a digest of each normalised text, not the text (memory bounded by
    the share).

    Stops after `cfg.max_read` rows (None: no bound) so a wrong bound cannot read a whole hub
    corpus. Dedup is on case- and whitespace-normalised text. A source of which no row passes
    is a ConfigError naming it with the counts (an empty dataset would be built on otherwise).
    """
    share = share or Share()
    counts = {"read": 0, "too_short": 0, "too_long": 0, "duplicate": 0}
    seen: set[bytes] = set()
    kept: list[dict] = []
    passed = 0
    rows_iter: Iterator[dict] = iter(rows)
    max_read = getattr(cfg, "max_read", None)
    while passed < cfg.n and (max_read is None or counts["read"] < max_read):
        try:
            row = next(rows_iter)
        except StopIteration:
            break
        counts["read"] += 1
        if MALFORMED in row:
            counts["malformed"] = counts.get("malformed", 0) + 1
            lines = counts.setdefault("malformed_lines", [])
            if len(lines) < 20:  # the first few, enough to find them
                lines.append(row[MALFORMED])
            continue
        value = row.get(cfg.text_field)
        if value is not None and not isinstance(value, str):  # a number or a list is no passage
            counts["not_text"] = counts.get("not_text", 0) + 1
            continue
        text = (value or "").strip()
        if len(text) < cfg.min_chars:
            counts["too_short"] += 1
            continue
        if len(text) > cfg.max_chars:
            counts["too_long"] += 1
            continue
        norm = hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).digest()
        if norm in seen:
            counts["duplicate"] += 1
            continue
        seen.add(norm)
        pid = passage_id(row, text, getattr(cfg, "id_field", "id"))
        if share.holds(passed, pid):
            kept.append({"id": pid, "text": text, "order": passed})
        else:
            counts["elsewhere"] = counts.get("elsewhere", 0) + 1
        passed += 1
    counts["out"] = len(kept)
    if not passed:
        raise nothing_kept(cfg, counts)
    return sorted(kept, key=lambda r: r["id"]), counts


def nothing_kept(cfg: Any, counts: dict) -> ConfigError:
    """The error for a seed source of which `take` kept no row: the source's key, the rows read
    and why each was rejected."""
    source = getattr(cfg, "source", "demo")
    if source in LOCAL_BUILDERS:
        key, what = "seed_data.path", repr(cfg.path)
    elif source == "hf":
        key, what = "seed_data.name", repr(cfg.name)
    else:
        key, what = "seed_data", "the demo corpus"
    reasons = []
    if counts.get("too_short"):
        reasons.append(
            f"{counts['too_short']} shorter than seed_data.min_chars={cfg.min_chars} (a row "
            f"without the seed_data.text_field {getattr(cfg, 'text_field', 'text')!r} is empty)"
        )
    if counts.get("too_long"):
        reasons.append(f"{counts['too_long']} longer than seed_data.max_chars={cfg.max_chars}")
    if counts.get("duplicate"):
        reasons.append(f"{counts['duplicate']} duplicates")
    if counts.get("not_text"):
        reasons.append(
            f"{counts['not_text']} whose {getattr(cfg, 'text_field', 'text')!r} is not text"
        )
    if counts.get("malformed"):
        first = (counts.get("malformed_lines") or ["?"])[0]
        reasons.append(f"{counts['malformed']} not a JSON object (first: {first})")
    max_read = getattr(cfg, "max_read", None)
    bound = f" (seed_data.max_read={max_read})" if max_read is not None else ""
    return ConfigError(
        key,
        f"{what} gave no passage: {counts['read']} row{'s' if counts['read'] != 1 else ''} "
        f"read{bound}"
        + (f", {', '.join(reasons)}" if reasons else ""),
    )


def select(rows: list[dict], cfg: Any, seed: int) -> list[dict]:
    """`cfg.n` passages of an in-memory list: a seeded shuffle, then `take`."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    return take(shuffled, cfg)[0]
