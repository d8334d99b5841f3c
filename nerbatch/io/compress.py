"""Compressed inputs and outputs, streamed: gzip, bzip2 and xz (standard library), zstd (``zstandard``).

The compression comes from the last suffix (``.gz``, ``.bz2``, ``.xz``, ``.zst``) and the format from
the one under it (``a.conll.gz`` is CoNLL). Inputs are decompressed as they are read, a buffer at a
time; line numbers are those of the decompressed text.

Outputs are written as a sequence of complete compressed streams (a gzip member, a bzip2 or xz stream,
a zstd frame): every checkpoint ends the current stream, so the bytes on disk up to a checkpoint are a
valid compressed file by themselves, and ``--resume`` cuts the file back there and starts a new
stream. All four formats define a file of concatenated streams as the concatenation of their
contents (``zcat``, ``bzcat``, ``xzcat``, ``zstdcat`` and Python's modules read them whole), so a resumed
output decompresses to exactly what an uninterrupted run writes; with the same checkpoints the
compressed bytes are the same too (gzip headers carry no name and no time).
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

from ..errors import InputError

SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
SUFFIX_FOR = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst"}

__all__ = [
    "SUFFIXES",
    "SUFFIX_FOR",
    "SegmentedCompressor",
    "compression_of",
    "decompress_errors",
    "open_decompressed",
    "split_compression",
]


def compression_of(path: str) -> str | None:
    """``gzip``, ``bzip2``, ``xz``, ``zstd`` or None, from the file name's last suffix."""
    return SUFFIXES.get(os.path.splitext(path)[1].lower())


def split_compression(path: str) -> tuple[str, str]:
    """``("a.conll", ".gz")`` for ``a.conll.gz``; ``(path, "")`` when not compressed."""
    base, ext = os.path.splitext(path)
    if ext.lower() in SUFFIXES:
        return base, ext
    return path, ""


def _zstandard(path: str):
    try:
        import zstandard
    except ImportError:
        raise InputError(
            "zstd files need the zstandard package", path=path, hint="pip install 'nerbatch[zstd]'"
        ) from None
    return zstandard


def decompress_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a damaged compressed stream raises while it is read."""
    import lzma
    import zlib

    errors: list[type[BaseException]] = [EOFError, zlib.error, lzma.LZMAError, OSError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errors)


def open_decompressed(path: str, raw: BinaryIO, kind: str) -> BinaryIO:
    """A buffered binary reader of the decompressed bytes of ``raw`` (every stream in the file)."""
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(raw, "rb")
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(raw, "rb")
    if kind == "zstd":
        return io.BufferedReader(ZstdFrames(raw, _zstandard(path).ZstdDecompressor()), 1 << 16)
    raise ValueError(kind)


class ZstdFrames(io.RawIOBase):
    """The decompressed bytes of every zstd frame in ``raw``, read a little at a time.

    A file that ends inside a frame raises :class:`EOFError`, as gzip, bz2 and lzma do (zstandard's
    own ``stream_reader`` ends quietly there, so a truncated file would read as a shorter one).
    The input goes to the decompressor ``feed`` bytes at a time, which bounds what one step can
    expand to (a zstd block of 128 KiB can be a few bytes).
    """

    def __init__(self, raw: BinaryIO, decompressor, feed: int = 1 << 10) -> None:
        super().__init__()
        self.raw = raw
        self.decompressor = decompressor
        self.feed = feed
        self.frame = decompressor.decompressobj()
        self.started = False  # bytes of the current frame have gone to the decompressor
        self.pending = memoryview(b"")  # read from ``raw``, not yet decompressed
        self.out = memoryview(b"")  # decompressed, not yet returned

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.out:
            if not self.pending:
                self.pending = memoryview(self.raw.read(1 << 16))
                if not self.pending:
                    if self.started:
                        raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                    return 0
            data, self.pending = self.pending[: self.feed], self.pending[self.feed :]
            self.started = True
            self.out = memoryview(self.frame.decompress(data))
            if self.frame.eof:  # the frame ended inside ``data``: the rest starts the next one
                rest = self.frame.unused_data
                self.frame = self.decompressor.decompressobj()
                self.started = False
                if rest:
                    self.pending = memoryview(bytes(rest) + bytes(self.pending))
        n = min(len(buffer), len(self.out))
        buffer[:n] = self.out[:n]
        self.out = self.out[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self.raw.close()
            finally:
                super().close()


def _compressor(kind: str, path: str):
    if kind == "gzip":
        import zlib

        return zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member, no name, mtime 0
    if kind == "bzip2":
        import bz2

        return bz2.BZ2Compressor(9)
    if kind == "xz":
        import lzma

        return lzma.LZMACompressor(format=lzma.FORMAT_XZ)
    if kind == "zstd":
        return _zstandard(path).ZstdCompressor(level=3).compressobj()
    raise ValueError(kind)


class SegmentedCompressor(io.RawIOBase):
    """A writable binary stream that compresses into the file descriptor ``fd``.

    :meth:`end_segment` closes the current compressed stream (a gzip member, ...): what is on disk
    is then a complete compressed file, the place a checkpoint records. The next write starts a
    new stream. :meth:`close` ends the last one (an empty output still gets one empty stream, so
    that it is a valid compressed file) and closes ``fd``.
    """

    def __init__(self, fd: int, kind: str, path: str, size: int | None = None) -> None:
        super().__init__()
        self.fd = fd
        self.kind = kind
        self.path = path
        self._comp = None
        # bytes of the output so far (a resumed file starts at its checkpoint); ``size``: those not in
        # ``fd`` (a URL output's spool holds only what came since the last chunk went up)
        self._size = os.fstat(fd).st_size if size is None else size
        _compressor(kind, path)  # fail early (zstandard missing) rather than at the first write

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def _out(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self._size += len(data)

    def write(self, data) -> int:  # type: ignore[override]
        if self._comp is None:
            self._comp = _compressor(self.kind, self.path)
        out = self._comp.compress(bytes(data))
        if out:
            self._out(out)
        return len(data)

    def end_segment(self, final: bool = False) -> None:
        """Finish the current compressed stream (nothing when nothing was written since the last;
        ``final``: the end of the output, which gets one empty stream if it has no bytes at all)."""
        if final and self._comp is None and self._size == 0:
            self._comp = _compressor(self.kind, self.path)
        if self._comp is not None:
            self._out(self._comp.flush())
            self._comp = None

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.end_segment(final=True)
        finally:
            try:
                os.close(self.fd)
            finally:
                super().close()
