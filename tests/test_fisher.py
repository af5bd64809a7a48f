"""Each Fisher estimator against a brute-force per-sample loop (micrograd-style reference)."""

import torch
import torch.nn.functional as F

from mnemonic_mu.algorithms.fisher import code_fisher, data_fisher, fisher_distance, mean_fisher, minibatch_fisher
from mnemonic_mu.algorithms.models import build_model


def _grad_sq(model, x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad.detach().clone() ** 2 for n, p in model.named_parameters()}


def _brute_per_sample(model, x, y):
    model.eval()
    acc = None
    for i in range(len(y)):
        g = _grad_sq(model, x[i : i + 1], y[i : i + 1])
        acc = g if acc is None else {n: acc[n] + g[n] for n in acc}
    return {n: v / len(y) for n, v in acc.items()}


def _close(a, b, rtol=1e-4, atol=1e-10):
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=rtol, atol=atol)


def _setup(model_name="mlp", shape=(1, 6, 6)):
    torch.manual_seed(0)
    model = build_model(model_name, shape, 4, seed=0)
    codes = torch.randn(4, *shape)
    x = torch.randn(23, *shape)
    y = torch.randint(0, 4, (23,))
    return model, codes, x, y


def test_code_fisher_is_squared_gradient_per_class():
    model, codes, _, _ = _setup()
    fishers = code_fisher(model, codes)
    assert len(fishers) == 4
    for c in range(4):
        _close(fishers[c], _brute_per_sample(model, codes[c : c + 1], torch.tensor([c])))


def test_code_fisher_vmap_matches_loop_with_batchnorm():
    model, codes, _, _ = _setup("resnet18", (3, 8, 8))
    # non-trivial running statistics, so eval mode matters
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 3, 8, 8) * 3 + 1)
    loop = code_fisher(model, codes, method="loop")
    fast = code_fisher(model, codes, method="vmap")
    for a, b in zip(loop, fast):
        _close(a, b, rtol=1e-3, atol=1e-12)
    assert model.training  # mode restored


def test_data_fisher_matches_brute_force_and_chunking():
    model, _, x, y = _setup()
    ref = _brute_per_sample(model, x, y)
    _close(data_fisher(model, x, y, chunk_size=5), ref)
    _close(data_fisher(model, x, y, chunk_size=1000), ref)


def test_minibatch_fisher_matches_its_definition_and_differs_from_per_sample():
    model, _, x, y = _setup()
    model.eval()
    ref = None
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 23, 8)]
    for xb, yb in batches:
        g = _grad_sq(model, xb, yb)
        ref = g if ref is None else {n: ref[n] + g[n] for n in ref}
    ref = {n: v / len(batches) for n, v in ref.items()}
    mb = minibatch_fisher(model, x, y, batch_size=8)
    _close(mb, ref)
    per_sample = data_fisher(model, x, y)
    # the square of a mean is smaller than the mean of squares: not the same quantity
    total_mb = sum(float(v.sum()) for v in mb.values())
    total_ps = sum(float(v.sum()) for v in per_sample.values())
    assert total_mb < 0.7 * total_ps


def test_mean_fisher_and_distance():
    a = {"w": torch.tensor([1.0, 3.0])}
    b = {"w": torch.tensor([3.0, 5.0])}
    torch.testing.assert_close(mean_fisher([a, b])["w"], torch.tensor([2.0, 4.0]))
    assert fisher_distance(a, a) == 0.0
    assert fisher_distance(a, b) > 0.1
