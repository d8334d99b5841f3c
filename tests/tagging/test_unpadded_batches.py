"""A batch without padding runs without an attention mask (the model builds none): the probabilities are
the same bits as with the all-ones mask, in fp32 and bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerbatch.model.loading import load_model
from nerbatch.tagging.backends import load_backend
from nerbatch.tagging.tagger import TaggerOptions


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_no_mask_for_a_full_batch_gives_the_same_bits(tiny_model, precision):
    backend = load_backend(tiny_model, TaggerOptions(device="cpu", precision=precision, compile=False))
    assert backend.kind == "eager"
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 60, size=(6, 17)).astype(np.int64)
    mask = np.ones_like(ids)
    rows, cols = np.repeat(np.arange(6), 17), np.tile(np.arange(17), 6)
    got = backend.predict(ids, mask, rows, cols)
    _, net = load_model(tiny_model)  # the same weights, run with the all-ones mask
    net.to(dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[precision]).eval()
    with torch.inference_mode():
        logits = net(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
        want = logits[torch.from_numpy(rows), torch.from_numpy(cols)].float().softmax(-1).numpy()
    assert got.dtype == want.dtype and np.array_equal(got, want)
    padded = mask.copy()
    padded[0, 10:] = 0  # with padding the mask is passed: the padded row's words differ from the full row's
    assert not np.array_equal(backend.predict(ids, padded, rows[:10], cols[:10]), got[:10])
