import torch

from mnemonic_mu.algorithms.codes import generate_codes, replace_with_codes
from mnemonic_mu.algorithms.dataset import augment_batch


def test_codes_are_seeded_and_independent_of_global_rng():
    a = generate_codes(10, (1, 28, 28), "normal", seed=3)
    torch.manual_seed(123)
    torch.rand(1000)  # other draws must not change the codes
    b = generate_codes(10, (1, 28, 28), "normal", seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, generate_codes(10, (1, 28, 28), "normal", seed=4))


def test_code_distributions():
    n = generate_codes(10, (1, 28, 28), "normal", seed=0)
    u = generate_codes(10, (1, 28, 28), "uniform", seed=0)
    assert abs(float(n.mean())) < 0.02 and abs(float(n.std()) - 1) < 0.02
    assert float(u.min()) >= 0 and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.02


def test_replacement_rate_close_to_t_mix_and_labels_kept():
    x = torch.zeros(20000, 1, 4, 4)
    y = torch.arange(20000) % 5
    codes = generate_codes(5, (1, 4, 4), "uniform", seed=0) + 1.0  # never zero
    gen = torch.Generator().manual_seed(0)
    mixed, mask = replace_with_codes(x, y, codes, 0.1, gen)
    rate = float(mask.float().mean())
    assert abs(rate - 0.1) < 0.01  # binomial std ~0.002
    assert torch.equal(mixed[mask], codes[y[mask]])
    assert torch.equal(mixed[~mask], x[~mask])
    # a fresh coin each call: the next epoch replaces different samples
    _, mask2 = replace_with_codes(x, y, codes, 0.1, gen)
    assert not torch.equal(mask, mask2)


def test_t_mix_extremes():
    x, y = torch.zeros(100, 3), torch.arange(100) % 2
    codes = torch.ones(2, 3)
    gen = torch.Generator().manual_seed(0)
    assert not replace_with_codes(x, y, codes, 0.0, gen)[1].any()
    assert replace_with_codes(x, y, codes, 1.0, gen)[1].all()


def test_augmentation_matches_per_sample_crop_and_flip():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    pad = (-1.0, -2.0, -3.0)
    out = augment_batch(x, gen, pad, padding=2)
    gen = torch.Generator().manual_seed(0)  # replay the same draws for a reference
    oy = torch.randint(0, 5, (16,), generator=gen)
    ox = torch.randint(0, 5, (16,), generator=gen)
    flip = torch.rand((16,), generator=gen) < 0.5
    for i in range(16):
        p = torch.tensor(pad).view(3, 1, 1).expand(3, 12, 12).clone()
        p[:, 2:10, 2:10] = x[i]
        ref = p[:, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8]
        if flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)
