"""Shared pieces of the readers and writers: options, line decoding, atomic output files."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import IO, BinaryIO, Iterator

from ..errors import InputError, OutputError
from ..record import Sentence

STDIO = "-"


@dataclass(frozen=True)
class ReadOptions:
    """How readers find tokens and tags. Column indexes may be negative (from the end)."""

    token_column: int = 0
    tag_column: int | None = -1  # CoNLL gold column; None: no gold tags
    pred_column: int | None = None  # CoNLL predicted column (evaluate reads ``word ... gold pred``)
    tokens_key: str = "tokens"  # JSONL key / Parquet column with the token list
    text_key: str = "text"  # JSONL key / Parquet column with raw text (split on whitespace)
    tags_key: str | None = None  # gold tags key/column; None: try "tags" then "ner_tags"
    pred_key: str = "pred_tags"
    doc_key: str | None = None  # document id key/column; None: try "doc_id" then "doc"
    encoding: str = "utf-8"
    errors: str = "strict"  # "strict" fails on undecodable bytes; "replace" goes on
    batch_rows: int = 1024  # Parquet record-batch size
    on_error: str = "fail"  # "skip": a bad record becomes a Sentence with ``error`` set, and reading goes on


def open_binary(path: str) -> BinaryIO:
    """Open an input for binary reading (``-`` is stdin) with a clear error when it can't be."""
    if path == STDIO:
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError("no such file", path=path, hint="check the path") from None
    except IsADirectoryError:
        raise InputError("is a folder, not a file", path=path) from None
    except PermissionError:
        raise InputError("permission denied: cannot read", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None


def decoded_lines(path: str, options: ReadOptions) -> Iterator[tuple[int, str, str | None]]:
    """Yield ``(line_number, text, error)`` without the line ending; BOM and CRLF tolerated.

    Undecodable bytes raise :class:`InputError` with the line and byte offset; under
    ``on_error="skip"`` the line comes with the error message instead (text decoded with
    replacement characters), and with ``errors="replace"`` they are replaced silently.
    Reads the file lazily, line by line.
    """
    stream = open_binary(path)
    offset = 0
    try:
        for lineno, raw in enumerate(stream, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
                offset += 3
            error = None
            try:
                text = raw.decode(options.encoding, options.errors)
            except UnicodeDecodeError as exc:
                err = InputError(
                    f"invalid {options.encoding} at byte offset {offset + exc.start}",
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
            offset += len(raw)
            yield lineno, text.rstrip("\r\n"), error
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=path) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


class AtomicOutput:
    """A file written under a temporary name in the target folder and renamed into place on commit.

    ``-`` writes to stdout (nothing to rename). On :meth:`abort` the temporary file is removed,
    so no reader ever sees a partial output. With ``part`` the temporary name is fixed (so an
    interrupted run can find it again) and ``resume_bytes`` reopens it, cut back to that size.
    """

    def __init__(
        self, path: str, *, binary: bool = False, part: str | None = None, resume_bytes: int | None = None
    ) -> None:
        self.path = path
        self.binary = binary
        self.tmp: str | None = None
        self._closed = False
        if path == STDIO:
            self.handle: IO = sys.stdout.buffer if binary else sys.stdout
            return
        folder = os.path.dirname(os.path.abspath(path))
        try:
            if part is not None:
                self.tmp = part
                if resume_bytes is not None:
                    raw = open(part, "r+b")
                    raw.truncate(resume_bytes)
                    raw.seek(resume_bytes)
                else:
                    raw = open(part, "wb")
                fd = os.dup(raw.fileno())
                raw.close()
            else:
                fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=folder)
        except FileNotFoundError:
            raise OutputError(f"{path}: output folder does not exist") from None
        except OSError as exc:
            raise OutputError(f"{path}: cannot write here: {exc.strerror}") from None
        self.handle = os.fdopen(fd, "ab" if part else "wb") if binary else io.open(
            fd, "a" if part else "w", encoding="utf-8", newline="\n", errors="backslashreplace"
        )

    def write(self, data) -> None:
        try:
            self.handle.write(data)
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: write failed: {exc.strerror or exc}") from None

    def sync(self) -> int:
        """Flush to disk; returns the bytes written so far (a checkpoint position)."""
        try:
            self.handle.flush()
            if self.tmp is not None:
                os.fsync(self.handle.fileno())
                return os.fstat(self.handle.fileno()).st_size
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: write failed: {exc.strerror or exc}") from None
        return 0

    def commit(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.handle.flush()
            if self.tmp is not None:
                os.fsync(self.handle.fileno())
                self.handle.close()
                os.replace(self.tmp, self.path)
                self.tmp = None
        except OSError as exc:
            self._remove_tmp()
            raise OutputError(f"{self.path}: write failed: {exc.strerror or exc}") from None

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
            return
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self.tmp is None:
            return
        try:
            self.handle.close()
        except OSError:
            pass
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

    def commit(self) -> None:
        try:
            self.finish()
        except BaseException:
            self.out.abort()
            raise
        self.out.commit()

    def abort(self, keep: bool = False) -> None:
        self.out.abort(keep=keep)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
