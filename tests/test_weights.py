from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from swapbench.errors import UserError
from swapbench.weights import WEIGHT_FILES, load_numpy_pickle, resolve


def cached_or_skip(name: str):
    try:
        return resolve(name)
    except UserError as exc:
        pytest.skip(f"{name} is not cached and cannot be fetched here: {exc}")


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pickle_that_calls_os_system_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"Conv_0": {"kernel": Hostile()}}))
    with pytest.raises(UserError, match="refusing to unpickle (posix|os|nt).system"):
        load_numpy_pickle(path)


def test_numpy_pickles_load(tmp_path):
    path = tmp_path / "ok.ckpt"
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    path.write_bytes(pickle.dumps(tree))
    assert np.array_equal(load_numpy_pickle(path)["a"]["kernel"], tree["a"]["kernel"])


def test_hash_mismatch_names_file_and_both_hashes(tmp_path, monkeypatch):
    bad = tmp_path / "vgg16.ckpt"
    bad.write_bytes(b"not the weights")
    monkeypatch.setenv("SWAPBENCH_LPIPS_VGG16", str(bad))
    with pytest.raises(UserError) as exc:
        resolve("lpips_vgg")
    msg = str(exc.value)
    assert str(bad) in msg and WEIGHT_FILES["lpips_vgg"].sha256 in msg and "SWAPBENCH_LPIPS_VGG16" in msg


def test_cache_hit_needs_no_network(tmp_path, monkeypatch):
    path, _ = cached_or_skip("lpips_alex")
    monkeypatch.setenv("SWAPBENCH_HOME", str(tmp_path))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "alexnet.ckpt").write_bytes(path.read_bytes())
    monkeypatch.setattr("swapbench.weights.fetch_from_pip", lambda *a: pytest.fail("went to the network"))
    assert resolve("lpips_alex") == (tmp_path / "weights" / "alexnet.ckpt", "cache")


def test_lpips_uses_the_calibrated_linear_layers_and_backbone():
    import lpips

    path, _ = cached_or_skip("lpips_vgg")
    tree = load_numpy_pickle(path)
    from swapbench.nn.lpips import build_lpips

    model = build_lpips("vgg")
    # the lpips package's own v0.1 linear layers equal those shipped beside the backbone
    for i, lin in enumerate(model.lins):
        jax = torch.from_numpy(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
        assert torch.equal(lin.model[-1].weight, jax)
    first_conv = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(first_conv.weight, torch.from_numpy(tree["VGG16_0"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1))
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert model(x, x).abs().max() == 0
    noisy = [model(x, (x + s * torch.randn_like(x)).clamp(-1, 1)).mean().item() for s in (0.05, 0.2, 0.5)]
    assert noisy[0] < noisy[1] < noisy[2]
    assert isinstance(model, lpips.LPIPS)
