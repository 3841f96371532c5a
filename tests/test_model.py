"""The MMLatch network: sizes, masks, feedback, determinism, padding, and that it can learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlatch.data import load_dataset
from mmlatch.model import MMLatch, ModelConfig, count_parameters
from tests.synthetic import write_synthetic_store

SMALL = dict(text_dim=12, audio_dim=7, vision_dim=5, hidden=16)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def inputs(b=4, t=9, seed=0, dims=(12, 7, 5)):
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(b, t, d, generator=g) for d in dims]
    lengths = torch.tensor([t, 3, 6, 1][:b])
    for k, n in enumerate(lengths):  # zero padding, as collate makes it
        for m in x:
            m[k, n:] = 0
    return x, lengths


def test_parameter_counts_match_the_reference():
    assert count_parameters(MMLatch(ModelConfig(300, 74, 35, hidden=100, feedback=False))) == 1_633_801
    assert count_parameters(MMLatch(ModelConfig(300, 74, 35, hidden=100, feedback=True))) == 2_741_153


def test_shapes_and_mask_ranges():
    torch.manual_seed(0)
    model = MMLatch(ModelConfig(**SMALL)).eval()
    (text, audio, vision), lengths = inputs()
    pred, masks = model(text, audio, vision, lengths, return_masks=True)
    assert pred.shape == (4,) and torch.isfinite(pred).all()
    assert {m: tuple(v.shape) for m, v in masks.items()} == {"text": (4, 9, 12), "audio": (4, 9, 7), "vision": (4, 9, 5)}
    for v in masks.values():
        assert float(v.detach().min()) > 0.0 and float(v.detach().max()) < 1.0
        assert float(v.detach().std()) > 1e-3  # a real gate, not a constant
    baseline = MMLatch(ModelConfig(**SMALL, feedback=False)).eval()
    pred_b, masks_b = baseline(text, audio, vision, lengths, return_masks=True)
    assert pred_b.shape == (4,) and masks_b == {}
    linear = MMLatch(ModelConfig(**SMALL, mask="linear")).eval()
    _, masks_l = linear(text, audio, vision, lengths, return_masks=True)
    assert masks_l["audio"].shape == (4, 9, 7)
    with pytest.raises(ValueError):
        ModelConfig(mask="conv")


def test_feedback_changes_the_output_and_masks_come_from_the_other_modalities():
    torch.manual_seed(0)
    model = MMLatch(ModelConfig(**SMALL)).eval()
    baseline = MMLatch(ModelConfig(**SMALL, feedback=False)).eval()
    missing, unexpected = baseline.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and all(k.startswith("masks.") for k in unexpected)  # same weights except G
    (text, audio, vision), lengths = inputs()
    with torch.no_grad():
        assert not torch.allclose(model(text, audio, vision, lengths), baseline(text, audio, vision, lengths), atol=1e-4)
        _, m1 = model(text, audio, vision, lengths, return_masks=True)
        _, m2 = model(text, audio, vision * 3 + 1, lengths, return_masks=True)
    assert not torch.allclose(m1["text"], m2["text"])  # text is gated from (audio, vision)
    assert not torch.allclose(m1["audio"], m2["audio"])
    assert torch.allclose(m1["vision"], m2["vision"])  # vision is gated only from (text, audio)


def test_eval_is_deterministic_unless_the_quirk_is_on():
    torch.manual_seed(0)
    model = MMLatch(ModelConfig(**SMALL)).eval()
    (text, audio, vision), lengths = inputs()
    with torch.no_grad():
        assert torch.equal(model(text, audio, vision, lengths), model(text, audio, vision, lengths))
        model.config.mask_dropout_in_eval = True
        a, b = model(text, audio, vision, lengths), model(text, audio, vision, lengths)
    assert not torch.allclose(a, b)


def test_padding_never_changes_a_prediction_unless_lengths_are_the_maximum():
    torch.manual_seed(0)
    model = MMLatch(ModelConfig(**SMALL)).eval()
    (text, audio, vision), lengths = inputs()
    with torch.no_grad():
        batch = model(text, audio, vision, lengths)
        alone = torch.stack([model(text[k:k + 1, :n], audio[k:k + 1, :n], vision[k:k + 1, :n], lengths[k:k + 1])[0]
                             for k, n in enumerate(lengths.tolist())])
        torch.testing.assert_close(batch, alone, rtol=1e-4, atol=1e-5)
        model.config.lengths_as_max = True  # the reference code's batches: padding is encoded
        quirk = model(text, audio, vision, lengths)
    assert not torch.allclose(batch[1:], quirk[1:], atol=1e-4)


def test_overfits_a_tiny_real_batch(tmp_path):
    """A batch read from a real (small, learnable) Parquet store through data.py: L1 must drop a lot."""
    features, labels = write_synthetic_store(tmp_path, n_videos=4, utterances_per_video=4,
                                             dims={"text": 12, "audio": 7, "vision": 5}, mean_words=6)
    data = load_dataset(features, labels, require=())
    batch = data.on("cpu").collate(np.arange(len(data)))
    torch.manual_seed(0)
    model = MMLatch(ModelConfig(**{**SMALL, "hidden": 32}))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.l1_loss(model(batch.text, batch.audio, batch.vision, batch.lengths), batch.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
