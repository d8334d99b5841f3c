"""token_offsets: each token's character span in the tokens joined by single spaces."""

from hypothesis import given
from hypothesis import strategies as st

from nerbatch.core.record import token_offsets


@given(st.lists(st.text(max_size=5), max_size=8))
def test_offsets_point_at_each_token_in_the_joined_text(tokens):
    text = " ".join(tokens)
    spans = token_offsets(tokens)
    assert len(spans) == len(tokens)
    assert [text[a:b] for a, b in spans] == tokens
    assert all(b + 1 == c for (_, b), (c, _) in zip(spans, spans[1:]))
    assert not spans or spans[0][0] == 0
