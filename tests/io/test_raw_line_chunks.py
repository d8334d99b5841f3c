"""The chunked line splitter (raw_line_chunks) gives exactly the lines of the line-at-a-time one
(raw_lines): the same bytes, line ends and over-long markers, whatever the chunk size, line ends
(LF, CRLF, lone CRs, an old Mac file) and bound; and the readers built on it read the same sentences."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from nerbatch.io.base import Overlong, ReadOptions, decoded_lines, raw_line_chunks, raw_lines


def _flat(items) -> list:
    return [("long", x.length) if isinstance(x, Overlong) else x for x in items]


def _line_chunks(data: bytes, max_bytes, chunk: int) -> list:
    got = []
    for batch in raw_line_chunks(io.BufferedReader(io.BytesIO(data)), max_bytes, chunk):
        assert batch  # never an empty list
        got.extend(batch)  # (an Overlong's length is complete once the next list is asked for)
    return _flat(got)


pieces = st.sampled_from([b"a", b"bb ", b"O", b"\n", b"\r\n", b"\r", b" ", b"\t", b"x" * 40, b"\xc3\xa9", b"\n\n"])


@settings(max_examples=400, deadline=None)
@given(st.lists(pieces, max_size=60), st.sampled_from([None, 0, 1, 3, 10, 50]), st.sampled_from([1, 2, 7, 64, 1 << 18]))
def test_chunks_hold_the_lines_of_raw_lines(parts, max_bytes, chunk):
    data = b"".join(parts)
    want = _flat(list(raw_lines(io.BufferedReader(io.BytesIO(data)), max_bytes)))
    assert _line_chunks(data, max_bytes, chunk) == want


def test_long_files_and_lines_across_chunks():
    data = b"".join(b"w%d O\n" % i + (b"\n" if i % 7 == 0 else b"") for i in range(20_000)) + b"y" * 5000 + b"\nlast"
    for max_bytes in (None, 100, 10_000):
        want = _flat(list(raw_lines(io.BufferedReader(io.BytesIO(data)), max_bytes)))
        for chunk in (100, 4096, 1 << 18):
            assert _line_chunks(data, max_bytes, chunk) == want


def test_an_over_long_line_is_not_held_whole():
    """Read past a chunk at a time: the 8 MB line is never in memory at once."""
    stream = io.BufferedReader(io.BytesIO(b"short\n" + b"x" * (8 << 20) + b"\nafter\n"))
    chunks = raw_line_chunks(stream, 1024, 1 << 16)
    assert next(chunks) == [b"short\n"]
    (long,) = next(chunks)
    assert isinstance(long, Overlong) and stream.tell() < 300_000
    assert next(chunks) == [b"after\n"] and long.length == (8 << 20) + 1


@settings(max_examples=100, deadline=None)
@given(st.lists(pieces, max_size=60), st.booleans())
def test_decoded_lines_of_a_file_are_those_read_line_by_line(tmp_path_factory, parts, bom):
    """A plain file (read in chunks) and the same bytes gzipped (decompressed a line at a time) decode
    to the same lines, line numbers and errors (undecodable bytes, over-long lines, a BOM inside)."""
    import gzip

    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(parts).replace(b"a", b"\xff", 1)
    folder = tmp_path_factory.mktemp("chunks")
    plain, packed = folder / "in.txt", folder / "in.txt.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    options = ReadOptions(on_error="skip", max_line_bytes=20)
    got = [(n, t, e and e.replace(str(plain), "IN")) for n, t, e in decoded_lines(str(plain), options)]
    want = [(n, t, e and e.replace(str(packed), "IN")) for n, t, e in decoded_lines(str(packed), options)]
    assert got == want
