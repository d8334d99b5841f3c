"""Shared pieces of the readers and writers: options, line decoding, atomic output files."""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import IO, BinaryIO, Iterable, Iterator

from ..core.record import Sentence
from ..errors import InputError, OutputError

STDIO = "-"
# What one input line and one sentence may hold (``--max-line-bytes``, ``--max-sentence-tokens``).
# Real lines stay far below 16 MiB (a JSONL record of a 3,000-page book); a longer one is a missing
# line break or a decompression bomb. Holding a line costs some 30 times its size once decoded,
# parsed and tokenised (a 16 MiB line of text: about 3 million words, about 0.5 GB), so the bound
# keeps one line under a gigabyte. A sentence of 100,000 tokens (a file without sentence breaks)
# costs about 0.1 GB to tag, as much as a block of ordinary sentences; the tagger holds a sentence's
# word pieces and windows whole, so a longer one would grow the run's memory with it.
MAX_LINE_BYTES = 16 << 20
MAX_SENTENCE_TOKENS = 100_000


@dataclass(frozen=True)
class ReadOptions:
    """How readers find tokens and tags. Column indexes may be negative (from the end)."""

    token_column: int = 0
    tag_column: int | None = -1  # CoNLL gold column; None: no gold tags
    pred_column: int | None = None  # CoNLL predicted column (evaluate reads ``word ... gold pred``)
    tokens_key: str = "tokens"  # JSONL key / Parquet column with the token list
    text_key: str = "text"  # JSONL key / Parquet column with raw text (tokenised, see nerbatch.core.tokenize)
    tags_key: str | None = None  # gold tags key/column; None: try "tags" then "ner_tags"
    pred_key: str = "pred_tags"
    doc_key: str | None = None  # document id key/column; None: try "doc_id" then "doc"
    encoding: str = "utf-8"
    errors: str = "strict"  # "strict" fails on undecodable bytes; "replace" goes on
    batch_rows: int = 1024  # Parquet record-batch size
    on_error: str = "fail"  # "skip": a bad record becomes a Sentence with ``error`` set, and reading goes on
    conllu: bool | None = None  # CoNLL-U (FORM column, ``#`` comments, ``1-2``/``1.1`` lines); None: by extension
    # raw text into sentences: "line", "paragraph" or "document" (nerbatch.core.tokenize.LAYOUTS);
    # None: the format's default, "line" for text files and "document" for JSONL/Parquet text fields
    layout: str | None = None
    tokenizer: str = "treebank"  # raw-text words: "treebank" (CoNLL-style) or "whitespace" (split on whitespace only)
    split: str | None = None  # Hugging Face dataset inputs: the split (None: the only one, else an error)
    config: str | None = None  # Hugging Face dataset inputs: the configuration (``load_dataset(path, config)``)
    # a longer line, a sentence with more tokens: an error at file:line (a reject under on_error="skip"); None: no bound
    max_line_bytes: int | None = MAX_LINE_BYTES
    max_sentence_tokens: int | None = MAX_SENTENCE_TOKENS

    def layout_for(self, fmt: str) -> str:
        """The layout raw text of input format ``fmt`` ("text", "jsonl", "parquet") is cut by."""
        if self.layout is not None:
            return self.layout
        return "line" if fmt == "text" else "document"


def sentence_too_long(options: ReadOptions, path: str, line: int, what: str = "tokens") -> InputError:
    """The error for a sentence of more than ``options.max_sentence_tokens`` tokens (CoNLL: token
    ``lines``) at ``path:line``."""
    return InputError(
        f"a sentence of more than {options.max_sentence_tokens:,} {what} (--max-sentence-tokens)",
        path=path,
        line=line,
        hint="no sentence breaks, such as blank lines between CoNLL sentences? add them, or pass a larger --max-sentence-tokens",
    )


def check_sentences(sentences: Iterable[Sentence], options: ReadOptions) -> None:
    """Raise :func:`sentence_too_long` for the first sentence over the bound (None: no bound)."""
    limit = options.max_sentence_tokens
    if limit is None:
        return
    for sent in sentences:
        if len(sent.tokens) > limit:
            raise sentence_too_long(options, sent.path, sent.line)


@dataclass(frozen=True)
class Slice:
    """A part of one input read on its own (cut by :mod:`nerbatch.io.split`): bytes ``[start, end)``
    of a CoNLL or JSONL file, or the row groups ``groups`` of a Parquet file (``start``/``end``:
    the bytes of their column chunks), with the reader's state where it begins: the number of its
    first line (Parquet: the rows before it, plus one), and for CoNLL the ``-DOCSTART-`` lines
    before it and the column count of the file's first token line. ``size``: the file's size when
    it was cut."""

    start: int
    end: int
    line: int = 1
    docs: int = 0
    columns: int | None = None
    groups: tuple[int, int] | None = None
    size: int = 0


def open_binary(path: str, decompress: bool = True, part: Slice | None = None) -> BinaryIO:
    """Open an input for binary reading (``-`` is stdin) with a clear error when it can't be.

    A compressed file (``.gz``, ``.bz2``, ``.xz``, ``.zst``: :mod:`nerbatch.io.compress`) reads as its
    decompressed bytes, streamed, unless ``decompress`` is false. A parts folder
    (:mod:`nerbatch.io.parts`) reads as its parts' bytes in order. ``part``: only the bytes of that
    slice of the file. The first open of a path under :func:`watch_input` feeds its digest with the
    raw bytes read.
    """
    if path == STDIO:
        return sys.stdin.buffer
    from .compress import compression_of, open_decompressed
    from .parts import is_parts_folder, open_parts
    from .remote import is_url, open_read

    kind = compression_of(path) if decompress and part is None else None
    digest = _WATCHED.pop(_watch_key(path), None) if _WATCHED else None
    opener = open_read if is_url(path) else functools.partial(open, mode="rb", buffering=0)
    try:
        if part is not None:
            window = _Window(opener(path), part.start, part.end)
            raw = io.BufferedReader(window if digest is None else _Hashing(window, digest), 1 << 16)
        elif is_url(path):
            raw = opener(path) if digest is None else io.BufferedReader(_Hashing(opener(path), digest), 1 << 16)
        elif is_parts_folder(path):
            raw = io.BufferedReader(open_parts(path) if digest is None else _Hashing(open_parts(path), digest), 1 << 16)
        elif digest is None:
            raw = open(path, "rb")
        else:
            raw = io.BufferedReader(_Hashing(open(path, "rb", buffering=0), digest), 1 << 16)
        if kind is not None:
            try:
                return open_decompressed(path, raw, kind)
            except BaseException:
                raw.close()
                raise
        return raw
    except FileNotFoundError:
        raise InputError("no such file", path=path, hint="check the path") from None
    except IsADirectoryError:
        raise InputError("is a folder, not a file", path=path) from None
    except PermissionError:
        raise InputError("permission denied: cannot read", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None


class InputDigest:
    """A running BLAKE2b hash of the raw bytes read from one input file (a compressed file's
    compressed bytes); :meth:`value` is ``{"bytes": n, "blake2b": hex}`` of what was read so far.
    Thread-safe: the tagger reads in a background thread while the engine checkpoints."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=20)
        self._lock = threading.Lock()
        self.bytes = 0

    def update(self, data) -> None:
        with self._lock:
            self._hash.update(data)
            self.bytes += len(data)

    def value(self) -> dict:
        with self._lock:
            return {"bytes": self.bytes, "blake2b": self._hash.hexdigest()}


_WATCHED: dict[str, InputDigest] = {}  # real path (a URL: itself) -> the digest its next open_binary feeds


def _watch_key(path: str) -> str:
    from .remote import is_url

    return path if is_url(path) else os.path.realpath(path)


def watch_input(path: str) -> InputDigest:
    """Hash the bytes that the next :func:`open_binary` of ``path`` reads (the reader of a run's
    job), as it reads them; :func:`unwatch_input` when the job is over."""
    digest = InputDigest()
    _WATCHED[_watch_key(path)] = digest
    return digest


def unwatch_input(path: str, digest: InputDigest) -> None:
    key = _watch_key(path)
    if _WATCHED.get(key) is digest:
        del _WATCHED[key]


class _Wrapped(io.RawIOBase):
    """A raw file read through another one (which it closes)."""

    def __init__(self, raw) -> None:
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _Window(_Wrapped):
    """Bytes ``[start, end)`` of a raw file (not seekable)."""

    def __init__(self, raw, start: int, end: int) -> None:
        super().__init__(raw)
        raw.seek(start)
        self._left = max(0, end - start)

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        n = self._raw.readinto(view) or 0
        self._left -= n
        return n


class _Hashing(_Wrapped):
    """A raw file that feeds an :class:`InputDigest` with every byte read from it (not seekable)."""

    def __init__(self, raw, digest: InputDigest) -> None:
        super().__init__(raw)
        self._digest = digest

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n


_SNIFF = 1 << 16  # bytes read to find the first line end
_EOL = re.compile(rb"\r\n|\r|\n")


class Overlong:
    """Stands for a line longer than the bound (see :func:`raw_lines`), whose bytes are not kept.

    ``length``: its bytes, line end included; complete once the next line has been asked for.
    """

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length


def _split_any_eol(chunks: Iterable[bytes], max_bytes: int | None = None) -> Iterator[bytes | Overlong]:
    """Lines (with their ends) of a byte stream whose lines end in CR, LF or CRLF; a line of more
    than ``max_bytes`` bytes (line end not counted) is an :class:`Overlong`, its bytes dropped."""
    pending: list[bytes] = []  # pieces of the line not yet ended
    size = 0  # their bytes
    long: Overlong | None = None  # the overlong line being read past
    cr = False  # the last chunk ended in CR: an LF may follow in the next one

    def add(piece: bytes, end: int = 0) -> Iterator[Overlong]:
        """Add ``piece`` (``end``: bytes of line end it finishes with) to the line being read."""
        nonlocal size, long
        if long is not None:
            long.length += len(piece)
            return
        pending.append(piece)
        size += len(piece)
        if max_bytes is not None and size - end > max_bytes:
            long = Overlong(size)
            pending.clear()
            yield long

    def finish() -> Iterator[bytes]:
        nonlocal size, long
        if long is None:
            yield b"".join(pending)
        pending.clear()
        size = 0
        long = None

    for chunk in chunks:
        pos = 0
        if cr:
            cr = False
            if chunk.startswith(b"\n"):
                yield from add(b"\n", 2)  # the end of a CRLF
                pos = 1
            yield from finish()
        for m in _EOL.finditer(chunk, pos):
            end = m.end()
            yield from add(chunk[pos:end], end - m.start())
            pos = end
            if end == len(chunk) and m.group() == b"\r":
                cr = True
                break
            yield from finish()
        if pos < len(chunk):
            yield from add(chunk[pos:])
    if pending or long is not None:
        yield from finish()


def _cr_lines(first: bytes) -> bool:
    """Whether a file whose first line (at most :data:`_SNIFF` bytes, with its LF) is ``first`` ends its
    lines in CR only (an old Mac file): a CR in it that does not end a CRLF."""
    body = first[:-1] if first.endswith(b"\n") else first
    return b"\r" in body.removesuffix(b"\r") or (body.endswith(b"\r") and not first.endswith(b"\n"))


def _body_length(line: bytes) -> int:
    """A line's length without its line end (LF or CRLF)."""
    return len(line) - (2 if line.endswith(b"\r\n") else line.endswith(b"\n"))


def raw_lines(stream: BinaryIO, max_bytes: int | None = None) -> Iterator[bytes | Overlong]:
    """The lines of ``stream`` with their line ends, read lazily.

    Lines end in LF (a CR before it belongs to the line end). A file whose first line holds a CR
    that is not part of a CRLF (old Mac files end lines in CR only) is split on CR, LF and CRLF.
    A line of more than ``max_bytes`` bytes (its end not counted; None: no bound) comes as an
    :class:`Overlong`: at most ``max_bytes`` + 1 of its bytes are ever held, and the rest is read
    past when the next line is asked for.
    """
    first = stream.readline(_SNIFF)
    if not first:
        return
    if _cr_lines(first):
        read = getattr(stream, "read1", stream.read)
        yield from _split_any_eol(itertools.chain([first], iter(lambda: read(_SNIFF), b"")), max_bytes)
        return
    limit = -1 if max_bytes is None else max_bytes + 2  # room for a CRLF, or a byte too many
    if not first.endswith(b"\n") and (limit < 0 or len(first) < limit):
        first += stream.readline(limit - len(first) if limit > 0 else -1)  # the rest of a long first line
    for line in itertools.chain([first], iter(lambda: stream.readline(limit), b"")):
        if max_bytes is None or len(line) <= max_bytes or _body_length(line) <= max_bytes:
            yield line
            continue
        long = Overlong(len(line))
        yield long
        while not line.endswith(b"\n"):  # read past the rest of it, a buffer at a time
            line = stream.readline(_SNIFF)
            if not line:
                break
            long.length += len(line)


def raw_line_chunks(stream: BinaryIO, max_bytes: int | None = None, chunk: int = _SNIFF) -> Iterator[list[bytes | Overlong]]:
    """The lines of :func:`raw_lines`, the same bytes and :class:`Overlong` markers, as lists: one list
    per ``chunk`` bytes read (a file's lines end in LF or CRLF), or per :data:`_BATCH_LINES` lines
    (an old Mac file, split on CR too, goes through :func:`raw_lines`).

    Why not :func:`raw_lines` in a loop: a Python step per line was a third of reading CoNLL-2003
    (measured); here a chunk is split into lines in C calls. An over-long line is found the same way:
    at most ``chunk`` + ``max_bytes`` + 1 of its bytes are held before it is read past. The chunk is
    the size of the buffered reads of a line at a time (64 KiB), so a checkpoint's digest of the input
    read so far (:func:`watch_input`) covers no more of the file than it did then.
    """
    read = stream.read
    head = read(_SNIFF)
    while head and len(head) < _SNIFF and b"\n" not in head:  # (a short read of a pipe or remote file)
        more = read(_SNIFF - len(head))
        if not more:
            break
        head += more
    if not head:
        return
    nl = head.find(b"\n", 0, _SNIFF)
    if _cr_lines(head[: nl + 1] if nl >= 0 else head[:_SNIFF]):
        read_any = getattr(stream, "read1", read)
        lines = _split_any_eol(itertools.chain([head], iter(lambda: read_any(_SNIFF), b"")), max_bytes)
        while batch := list(itertools.islice(lines, _BATCH_LINES)):
            yield batch
        return
    carry = b""
    data = head
    over: Overlong | None = None  # an over-long line being read past
    while data:
        if over is not None:
            nl = data.find(b"\n")
            if nl < 0:
                over.length += len(data)
                data = read(chunk)
                continue
            over.length += nl + 1
            data, over = data[nl + 1 :], None
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n") + 1
        carry = buf[cut:]
        if cut:
            done = buf[:cut]
            if b"\r" not in done or done.count(b"\r") == done.count(b"\r\n"):
                lines: list = done.splitlines(keepends=True)  # (exact: every CR here ends a CRLF)
            else:
                lines = [line + b"\n" for line in done.split(b"\n")[:-1]]  # a lone CR stays inside its line
            if max_bytes is not None and max(map(len, lines)) > max_bytes + 1:
                lines = [Overlong(len(line)) if _body_length(line) > max_bytes else line for line in lines]
            yield lines
        if max_bytes is not None and len(carry) > max_bytes + 1:  # no line end yet: over-long in any case
            over, carry = Overlong(len(carry)), b""
            yield [over]
        data = read(chunk)
    if carry:  # the last line, without a line end
        yield [Overlong(len(carry)) if max_bytes is not None and len(carry) > max_bytes else carry]


def decoded_lines(path: str, options: ReadOptions, part: Slice | None = None) -> Iterator[tuple[int, str, str | None]]:
    """Yield ``(line_number, text, error)`` without the line ending; BOM, CRLF and CR-only tolerated.

    ``part``: only the lines of that slice of the file, numbered (and byte offsets counted) as in the whole file.

    Undecodable bytes raise :class:`InputError` with the line and byte offset; under
    ``on_error="skip"`` the line comes with the error message instead (text decoded with
    replacement characters), and with ``errors="replace"`` they are replaced silently.
    A byte-order mark at the start of a later line (files joined with ``cat``) is an error too.
    A line longer than ``options.max_line_bytes`` is an error the same way (under skip its text is
    empty: it is never held). Reads the file lazily, a batch of lines at a time (:func:`decoded_batches`).
    """
    for first, texts, lines in decoded_batches(path, options, part):
        if texts is None:
            yield from lines
        else:
            for lineno, text in enumerate(texts, first):
                yield lineno, text, None


def decoded_batches(
    path: str, options: ReadOptions, part: Slice | None = None, until_blank: bool = False
) -> Iterator[tuple[int, list[str] | None, Iterator[tuple[int, str, str | None]] | None]]:
    """The lines of :func:`decoded_lines` a batch at a time: ``(first line number, texts, None)`` for
    a batch with nothing to report, decoded in one call (for UTF-8, ASCII and Latin-1, strict), else
    ``(first line number, None, (line_number, text, error) ...)``, an iterator to use up before asking
    for the next batch (errors are raised in line order). ``until_blank``: a batch goes on
    to the next empty line (within :data:`_BATCH_MORE` more lines), so that most batches end where a
    sentence does (the CoNLL reader's fast path)."""
    from .compress import compression_of, decompress_errors
    from .parts import is_parts_folder

    stream = open_binary(path, part=part)
    kind = compression_of(path) if path != STDIO and part is None else None
    fast = options.errors == "strict" and _plain_codec(options.encoding)
    # a plain file a chunk at a time; stdin (lines as they come), compressed data (a corrupt stream is
    # reported at the exact line it breaks) and parts folders a line at a time
    chunked = path != STDIO and kind is None and (part is not None or not is_parts_folder(path))
    lines = raw_lines(stream, options.max_line_bytes) if not chunked else None
    chunks = raw_line_chunks(stream, options.max_line_bytes) if chunked else None
    tail: list = []  # (chunked, until_blank) the lines of a chunk after its last blank line, for the next batch
    # lines done (a part starts at its first line), bytes done, an over-long line still being read past
    at = [part.line - 1 if part is not None else 0, part.start if part is not None else 0, None]
    try:
        while True:
            batch: list = []
            broken = None
            try:
                if chunks is not None:
                    batch = tail + next(chunks, [])
                    tail = []
                    if until_blank and batch and not _blank_raw(batch[-1]):
                        end = _last_blank(batch)
                        if end:
                            batch, tail = batch[:end], batch[end:]
                else:
                    batch.extend(itertools.islice(lines, _BATCH_LINES))
                    if until_blank and batch:
                        more = 0
                        while more < _BATCH_MORE and not _blank_raw(batch[-1]):
                            line = next(lines, None)
                            if line is None:
                                break
                            batch.append(line)
                            more += 1
            except decompress_errors() as exc:  # the lines before it still come, as they would one by one
                broken = exc
            if not batch and broken is None:
                break
            if at[0] == 0 and batch and isinstance(batch[0], bytes) and batch[0].startswith(b"\xef\xbb\xbf"):
                batch[0] = batch[0][3:]
                at[1] += 3
            texts = _decode_batch(batch, options.encoding, at[2] is None) if fast else None
            if texts is None:
                yield at[0] + 1, None, _decode_lines(batch, at, path, options)  # consumed before the next batch
            else:
                yield at[0] + 1, texts, None  # nothing to report in the batch
                at[0] += len(texts)
                at[1] += sum(map(len, batch))
            if broken is not None:
                raise broken
    except decompress_errors() as exc:
        lineno = at[0]
        if kind is None:
            if isinstance(exc, OSError):
                raise InputError(f"cannot read: {exc.strerror or exc}", path=path) from None
            raise
        raise InputError(
            f"corrupt {kind} data at decompressed line {lineno + 1}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}",
            path=path,
            line=lineno + 1,
            hint=f"the file is damaged or truncated; lines 1-{lineno} decompressed" if lineno else "the file is damaged or not " + kind,
        ) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _blank_raw(line) -> bool:
    return type(line) is bytes and not line.strip(b" \t\r\n")


def _last_blank(batch: list) -> int:
    """The index after the last blank line of a batch (0: none), looked for in C calls."""
    backwards = batch[::-1]
    ends = [len(batch) - backwards.index(blank) for blank in (b"\n", b"\r\n") if blank in backwards]
    if ends:
        return max(ends)
    for i in range(len(batch) - 1, -1, -1):  # blanks of spaces and tabs
        if _blank_raw(batch[i]):
            return i + 1
    return 0


_BATCH_MORE = 8192  # lines a batch may go on for to end at a blank line (decoded_batches)
_BATCH_LINES = 2048  # lines decoded together


def _plain_codec(encoding: str) -> bool:
    """Whether lines of this encoding decode the same joined as one by one (no per-line BOM handling)."""
    import codecs

    try:
        return codecs.lookup(encoding).name in ("utf-8", "ascii", "iso8859-1")
    except LookupError:
        return False


_BYTES = {bytes}


def _decode_batch(batch: list, encoding: str, clean_start: bool) -> list[str] | None:
    """The texts of a batch of raw lines decoded in one call, without line ends; None when the batch
    has something to report (an over-long line, undecodable bytes, a byte-order mark), or follows an
    over-long line still being read past: then it goes line by line."""
    if not batch or not clean_start or set(map(type, batch)) != _BYTES:
        return None
    try:
        text = b"".join(batch).decode(encoding)
    except UnicodeDecodeError:
        return None
    if "\ufeff" in text:
        return None
    texts = text.split("\n")
    if batch[-1].endswith(b"\n"):
        texts.pop()  # after the last line end
    if len(texts) != len(batch):  # pragma: no cover - a line end inside a line: cannot happen
        return None
    return [t.rstrip("\r") for t in texts] if "\r" in text else texts


def _decode_lines(batch: list, at: list, path: str, options: ReadOptions) -> Iterator[tuple[int, str, str | None]]:
    """:func:`decoded_lines` line by line for one batch; ``at`` is (lines done, bytes done, an
    over-long line being read past) and is kept up to date."""
    for raw in batch:
        at[0] += 1
        lineno = at[0]
        if at[2] is not None:  # read past by now
            at[1] += at[2].length
            at[2] = None
        if isinstance(raw, Overlong):
            err = InputError(
                f"a line longer than {options.max_line_bytes:,} bytes (--max-line-bytes)",
                path=path,
                line=lineno,
                hint="a missing line break or a damaged file? pass a larger --max-line-bytes to read it",
            )
            if options.on_error != "skip":
                raise err
            at[2] = raw
            yield lineno, "", str(err)
            continue
        error = None
        try:
            text = raw.decode(options.encoding, options.errors)
        except UnicodeDecodeError as exc:
            err = InputError(
                f"invalid {options.encoding} at byte offset {at[1] + exc.start}",
                path=path,
                line=lineno,
                hint="pass --encoding for another encoding, or --errors replace to go on",
            )
            if options.on_error != "skip":
                raise err from None
            error = str(err)
            text = raw.decode(options.encoding, "replace")
        except LookupError:
            raise InputError(f"unknown encoding {options.encoding!r}", path=path) from None
        if lineno > 1 and text.startswith("\ufeff") and error is None:
            err = InputError(
                "a byte-order mark (U+FEFF) in the middle of the file: concatenated files?",
                path=path,
                line=lineno,
                hint="remove it, or pass --encoding utf-8-sig to drop a byte-order mark at the start of any line",
            )
            if options.on_error != "skip":
                raise err
            error = str(err)
        at[1] += len(raw)
        yield lineno, text.rstrip("\r\n"), error


class AtomicOutput:
    """A file written under a temporary name in the target folder and renamed into place on commit.

    ``-`` writes to stdout (nothing to rename). On :meth:`abort` the temporary file is removed,
    so no reader ever sees a partial output. With ``part`` the temporary name is fixed (so an
    interrupted run can find it again) and ``resume_bytes`` reopens it, cut back to that size; the
    part file is never opened through a link (:func:`nerbatch.io.atomic.open_new`, ``open_own``).

    An existing character device, FIFO or socket (``/dev/null``, ``/dev/stdout``, a named pipe;
    :func:`nerbatch.io.atomic.is_stream`) is written in place as a stream, like stdout: it is never
    replaced. A symbolic link to a file is written through: the file it points to is replaced
    atomically and the link stays. A replaced file keeps its permissions.

    A URL (:mod:`nerbatch.io.remote`) is written to a local spool file that each :meth:`sync` ships
    as a chunk object and empties, and :meth:`commit` publishes through
    :class:`nerbatch.io.remote.Upload` (assembled under a temporary key, moved into place).
    """

    def __init__(
        self, path: str, *, binary: bool = False, part: str | None = None, resume_bytes: int | None = None
    ) -> None:
        from .atomic import fd_alias, is_stream, open_new, open_own, replace_target, umask_mode

        self.path = path
        self.binary = binary
        self.tmp: str | None = None
        self.target = path  # the file the rename replaces (a link's target)
        self.stream = False  # written in place: stdout, a device, a FIFO
        self._own = True  # the handle is ours to close (not stdout)
        self._closed = False
        self.segments = None  # the compressor of a compressed output (see nerbatch.io.compress)
        self.upload = None  # a URL output's object-store side (nerbatch.io.remote.Upload); tmp is its spool
        if path == STDIO:
            self.stream, self._own = True, False
            self.handle: IO = sys.stdout.buffer if binary else sys.stdout
            return
        from .remote import Upload, is_url

        try:
            if is_url(path):
                self.upload = Upload(path, part=part, resume_bytes=resume_bytes)
                spool, self.tmp = tempfile.mkstemp(prefix="nerbatch-", suffix=".spool")
                os.close(spool)  # reopened to append: Upload.ship empties it under the open handle
                fd = os.open(self.tmp, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            elif is_stream(path):
                self.stream = True
                alias = fd_alias(path)  # /dev/stdout: that descriptor itself (its offset, O_APPEND)
                fd = os.dup(alias) if alias is not None else os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
            else:
                self.target = replace_target(path)
                folder = os.path.dirname(os.path.abspath(self.target))
                if part is not None:
                    self.tmp = part
                    if resume_bytes is not None:
                        fd = open_own(part)
                        os.ftruncate(fd, resume_bytes)
                        os.lseek(fd, resume_bytes, os.SEEK_SET)
                    else:
                        fd = open_new(part, umask_mode())
                else:
                    fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.target)}.", suffix=".part", dir=folder)
                    try:  # mkstemp creates 0600; the output gets the mode the umask gives
                        os.fchmod(fd, umask_mode())
                    except OSError:
                        pass
        except FileNotFoundError:
            raise OutputError(f"{path}: output folder does not exist") from None
        except OSError as exc:
            raise OutputError(f"{path}: cannot write here: {exc.strerror or exc}") from None
        from .compress import compression_of

        kind = compression_of(path)
        if kind is not None:
            from .compress import SegmentedCompressor

            if part is not None:
                os.lseek(fd, 0, os.SEEK_END)
            try:
                self.segments = SegmentedCompressor(fd, kind, path, size=self.upload.bytes if self.upload else None)
            except BaseException:
                os.close(fd)
                if self.tmp is not None and part is None:
                    os.unlink(self.tmp)
                raise
            self.handle = self.segments if binary else io.TextIOWrapper(
                self.segments, encoding="utf-8", newline="\n", errors="backslashreplace"  # type: ignore[arg-type]
            )
            return
        self.handle = os.fdopen(fd, "ab" if part else "wb") if binary else io.open(
            fd, "a" if part else "w", encoding="utf-8", newline="\n", errors="backslashreplace"
        )

    def write(self, data) -> None:
        try:
            self.handle.write(data)
        except BrokenPipeError:
            raise  # stdout closed by the reader (| head): the CLI exits quietly
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: write failed: {exc.strerror or exc}") from None

    def sync(self) -> int:
        """Flush to disk; returns the bytes written so far (a checkpoint position)."""
        try:
            self.handle.flush()
            if self.segments is not None:
                self.segments.end_segment()  # a checkpoint ends on a complete compressed stream
            if self.upload is not None:
                return self.upload.ship(self.tmp)
            if self.tmp is not None:
                os.fsync(self.handle.fileno())
                return os.fstat(self.handle.fileno()).st_size
        except BrokenPipeError:
            raise  # stdout closed by the reader (| head): the CLI exits quietly
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: write failed: {exc.strerror or exc}") from None
        return 0

    def commit(self, before_rename=None) -> None:
        """Publish the file: flush, fsync, then rename into place. ``before_rename(st)`` is called
        with the durable temporary file's ``os.stat`` result just before the rename (the inode
        stays the same through it), so a caller can record what the finished output will be."""
        if self._closed:
            return
        try:
            from .atomic import kept_mode, umask_mode

            mode = kept_mode(self.target, umask_mode()) if self.tmp is not None and self.upload is None else None
            self._settle(close=self._own, mode=mode)
            if self.upload is not None:
                self.upload.publish(self.tmp, before_rename)
                os.unlink(self.tmp)
                self.tmp = None
            elif self.tmp is not None:
                if before_rename is not None:
                    before_rename(os.stat(self.tmp))
                os.replace(self.tmp, self.target)
                self.tmp = None
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._remove_tmp()
            raise OutputError(f"{self.path}: write failed: {exc.strerror or exc}") from None

    def close_unpublished(self) -> str | None:
        """Flush, fsync and close the temporary file without renaming it; returns its path (the
        caller publishes it in another form and removes it, see :class:`nerbatch.io.hf.DatasetWriter`)."""
        self._settle(close=True)
        return self.tmp

    def _settle(self, close: bool, mode: int | None = None) -> None:
        """Flush, end the last compressed segment, fsync a temporary file (giving it ``mode``);
        close the handle if asked."""
        self._closed = True
        self.handle.flush()
        if self.segments is not None:
            self.segments.end_segment(final=True)
        if self.tmp is not None:
            if mode is not None:
                os.fchmod(self.handle.fileno(), mode)
            os.fsync(self.handle.fileno())
        if close:
            self.handle.close()

    def abort(self, keep: bool = False) -> None:
        """Close without publishing; the partial file is removed unless ``keep`` (resumable)."""
        if self._closed:
            return
        self._closed = True
        if keep and self.tmp is not None:
            try:
                self.handle.close()
            except OSError:
                pass
            if self.upload is not None:  # the chunks up to the checkpoint stay; the spool goes
                self._unlink_tmp()
            return
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self._own:
            try:
                self.handle.close()
            except (OSError, ValueError):
                pass
        if self.upload is not None:
            self.upload.discard()
        self._unlink_tmp()

    def _unlink_tmp(self) -> None:
        if self.tmp is None:
            return
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
        self.tmp = None


class Writer:
    """Base writer: ``write(sentence)`` in input order, then ``commit()``; ``abort()`` on failure.

    Used as a context manager it commits on success and aborts on any exception.
    ``checkpoint()`` makes what was written so far durable and returns what a later run needs to
    continue from there (``resume=`` that dict); ``part`` fixes the partial file's name.
    """

    binary = False

    def __init__(self, path: str, *, part: str | None = None, resume: dict | None = None) -> None:
        self.path = path
        self.part = part
        self.out = AtomicOutput(
            path, binary=self.binary, part=part, resume_bytes=resume["bytes"] if resume else None
        )
        self.resumed = resume is not None
        if resume:
            self.restore(resume.get("state") or {})

    def write(self, sentence: Sentence) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def state(self) -> dict:
        """Writer state needed to continue after a checkpoint (JSON-safe)."""
        return {}

    def restore(self, state: dict) -> None:
        """Take back the state saved by :meth:`state`."""

    def checkpoint(self) -> dict:
        return {"bytes": self.out.sync(), "state": self.state()}

    def finish(self) -> None:
        """Write whatever closes the format (footer, last buffered rows) before commit."""

    def finish_or_abort(self) -> None:
        """:meth:`finish`, removing the partial output if that fails."""
        try:
            self.finish()
        except BaseException:
            self.out.abort()
            raise

    def commit(self, before_rename=None) -> None:
        """Finish the format and publish the output (see :meth:`AtomicOutput.commit`)."""
        self.finish_or_abort()
        self.out.commit(before_rename)

    def abort(self, keep: bool = False) -> None:
        self.out.abort(keep=keep)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
