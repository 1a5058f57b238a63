"""CUT networks: the official module list and key layout, shapes, init, blur filters, loading."""
import numpy as np
import pytest
import torch
from torch import nn

from selfsup.cut.infer import load_generator
from selfsup.cut.networks import (DEFAULT_NCE_LAYERS, Downsample, InstanceNorm, PatchGANDiscriminator, PatchSampleF,
                                  ResnetGenerator, Upsample, count_parameters, init_weights,
                                  load_state_dict_checked)
from selfsup.cut.stylegan import SinCUTDiscriminator, SinCUTGenerator


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster than two and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blur3():
    a = np.array([1.0, 2.0, 1.0])
    return np.outer(a, a) / 16.0


def blur4_up():
    a = np.array([1.0, 3.0, 3.0, 1.0])
    return np.outer(a, a) / 64.0 * 4.0


def official_generator_state(ngf=64, n_blocks=9, seed=0):
    """The official antialiased ResNet generator's state dict, built from the module list."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.02
    d = ngf * 4
    sd = {"model.1.weight": r(ngf, 3, 7, 7), "model.1.bias": r(ngf),
          "model.4.weight": r(ngf * 2, ngf, 3, 3), "model.4.bias": r(ngf * 2),
          "model.7.filt": torch.tensor(blur3(), dtype=torch.float32)[None, None].repeat(ngf * 2, 1, 1, 1),
          "model.8.weight": r(d, ngf * 2, 3, 3), "model.8.bias": r(d),
          "model.11.filt": torch.tensor(blur3(), dtype=torch.float32)[None, None].repeat(d, 1, 1, 1)}
    for i in range(12, 12 + n_blocks):
        for j in (1, 5):
            sd[f"model.{i}.conv_block.{j}.weight"] = r(d, d, 3, 3)
            sd[f"model.{i}.conv_block.{j}.bias"] = r(d)
    up = 12 + n_blocks
    sd[f"model.{up}.filt"] = torch.tensor(blur4_up(), dtype=torch.float32)[None, None].repeat(d, 1, 1, 1)
    sd[f"model.{up + 1}.weight"], sd[f"model.{up + 1}.bias"] = r(ngf * 2, d, 3, 3), r(ngf * 2)
    sd[f"model.{up + 4}.filt"] = torch.tensor(blur4_up(), dtype=torch.float32)[None, None].repeat(ngf * 2, 1, 1, 1)
    sd[f"model.{up + 5}.weight"], sd[f"model.{up + 5}.bias"] = r(ngf, ngf * 2, 3, 3), r(ngf)
    sd[f"model.{up + 9}.weight"], sd[f"model.{up + 9}.bias"] = r(3, ngf, 7, 7), r(3)
    return sd


def test_generator_matches_official_key_layout_at_paper_size():
    g = ResnetGenerator()
    want = official_generator_state()
    got = g.state_dict()
    assert set(got) == set(want)
    assert all(tuple(got[k].shape) == tuple(want[k].shape) for k in want)
    assert count_parameters(g) == 11_378_179
    # spec §6 names
    assert tuple(got["model.7.filt"].shape) == (128, 1, 3, 3)
    assert tuple(got["model.21.filt"].shape) == (256, 1, 4, 4)
    assert tuple(got["model.25.filt"].shape) == (128, 1, 4, 4)
    assert "filt" not in {n.split(".")[-1] for n, _ in g.named_parameters()}


def test_discriminator_and_f_key_layout_and_sizes():
    d = PatchGANDiscriminator()
    keys = set(d.state_dict())
    want = {f"model.{i}.{p}" for i in (0, 3, 7, 11, 14) for p in ("weight", "bias")}
    want |= {f"model.{i}.filt" for i in (2, 6, 10)}
    assert keys == want
    assert count_parameters(d) == 2_764_737
    f = PatchSampleF([3, 128, 256, 256, 256])
    assert set(f.state_dict()) == {f"mlp_{l}.{i}.{p}" for l in range(5) for i in (0, 2) for p in ("weight", "bias")}
    assert count_parameters(f) == 560_384
    assert ResnetGenerator().nce_channels(DEFAULT_NCE_LAYERS) == [3, 128, 256, 256, 256]


def test_shapes_small():
    g = ResnetGenerator(ngf=4, n_blocks=9)
    x = torch.randn(2, 3, 32, 32)
    y, feats = g.forward_with_features(x, DEFAULT_NCE_LAYERS)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert [tuple(f.shape) for f in feats] == [(2, 3, 38, 38), (2, 8, 32, 32), (2, 16, 16, 16),
                                               (2, 16, 8, 8), (2, 16, 8, 8)]
    d = PatchGANDiscriminator(ndf=2)
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_encode_stops_after_last_layer_and_equals_full_forward_features():
    g = ResnetGenerator(ngf=4, n_blocks=3)
    calls = []
    for i, m in enumerate(g.model):
        m.register_forward_hook(lambda mod, inp, out, i=i: calls.append(i))
    x = torch.randn(1, 3, 16, 16)
    feats = g.encode(x, [0, 4, 8])
    assert max(calls) == 8
    calls.clear()
    _, full = g.forward_with_features(x, [0, 4, 8])
    assert max(calls) == len(g.model) - 1
    for a, b in zip(feats, full):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="outside the encoder"):
        g.encode(x, [0, 16])


def test_instance_norm_without_affine_or_stats():
    g = ResnetGenerator(ngf=4, n_blocks=2)
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)


def test_generator_cannot_see_a_global_colour_offset():
    """The first conv maps a constant RGB offset to a constant per channel, which the first
    InstanceNorm removes: G(x + c) = G(x). So on data whose colours do not follow from their
    texture the generator can only guess an image's mean colour (docs/translation.md); a gain
    per RGB channel, by contrast, does reach the output."""
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(ngf=8, n_blocks=2), 0.02).eval()
    x = torch.rand(2, 3, 32, 32) * 1.4 - 0.7
    offset = torch.tensor([0.25, -0.2, 0.1]).view(1, 3, 1, 1)
    gain = torch.tensor([1.3, 0.8, 1.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        y = g(x)
        assert torch.allclose(g(x + offset), y, atol=1e-5)
        assert (g(x * gain) - y).abs().max() > 1e-3


@pytest.mark.parametrize("batch", [1, 2])
def test_instance_norm_values_and_gradient_for_any_gradient_layout(batch):
    x = torch.randn(batch, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    y = InstanceNorm(5)(x)
    ref = np.zeros((batch, 5, 6, 7))
    xn = x.detach().numpy()
    for b in range(batch):
        for c in range(5):
            v = xn[b, c]
            ref[b, c] = (v - v.mean()) / np.sqrt(((v - v.mean()) ** 2).mean() + 1e-5)
    np.testing.assert_allclose(y.detach().numpy(), ref, atol=1e-10)
    torch.testing.assert_close(y, nn.InstanceNorm2d(5)(x))
    # PatchNCE's sampling hands back channels-last strided gradients; the input gradient must not
    # depend on the layout (torch's CPU instance_norm kernel gets batch 1 wrong here)
    g = torch.randn(batch, 6, 7, 5, dtype=torch.float64).permute(0, 3, 1, 2)
    (ga,) = torch.autograd.grad(y, x, g, retain_graph=True)
    (gb,) = torch.autograd.grad(y, x, g.contiguous())
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-10)
    v = torch.randn_like(x)
    h = 1e-6
    norm = InstanceNorm(5)
    fd = ((norm(x + h * v) * g).sum() - (norm(x - h * v) * g).sum()) / (2 * h)
    assert float((ga * v).sum()) == pytest.approx(float(fd.detach()), rel=1e-6)


def test_init_xavier_normal_gain_002_zero_bias():
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(ngf=16, n_blocks=2))
    w = g.model[4].weight  # 32×16×3×3
    fan_in, fan_out = 16 * 9, 32 * 9
    std = 0.02 * np.sqrt(2.0 / (fan_in + fan_out))
    assert float(w.detach().std()) == pytest.approx(std, rel=0.05)
    assert abs(float(w.detach().mean())) < std * 0.1
    assert all(float(m.bias.detach().abs().max()) == 0 for m in g.modules() if isinstance(m, nn.Conv2d))
    f = init_weights(PatchSampleF([3, 8]))
    assert float(f.mlp_1[0].bias.detach().abs().max()) == 0


def test_downsample_matches_loop():
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    m = Downsample(2).double()
    got = m(x)
    f = blur3()
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    h_out, w_out = (6 + 2 - 3) // 2 + 1, (7 + 2 - 3) // 2 + 1
    ref = np.zeros((1, 2, h_out, w_out))
    for c in range(2):
        for i in range(h_out):
            for j in range(w_out):
                ref[0, c, i, j] = (xp[0, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * f).sum()
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_upsample_matches_loop():
    h, w = 3, 4
    x = torch.randn(1, 1, h, w, dtype=torch.float64)
    got = Upsample(1).double()(x).numpy()
    assert got.shape == (1, 1, 2 * h, 2 * w)
    f = blur4_up()
    xp = np.pad(x.numpy()[0, 0], 1, mode="edge")
    # transposed conv, stride 2, padding 2: out[o] += xp[i] * f[k] where o = 2i − 2 + k
    full_h, full_w = (h + 2 - 1) * 2 - 4 + 4, (w + 2 - 1) * 2 - 4 + 4
    full = np.zeros((full_h, full_w))
    for i in range(h + 2):
        for j in range(w + 2):
            for ki in range(4):
                for kj in range(4):
                    oi, oj = 2 * i - 2 + ki, 2 * j - 2 + kj
                    if 0 <= oi < full_h and 0 <= oj < full_w:
                        full[oi, oj] += xp[i, j] * f[ki, kj]
    ref = full[1:-1, 1:-1]  # drop the first and the last row and column
    np.testing.assert_allclose(got[0, 0], ref, atol=1e-12)
    # a constant image stays constant (the filter keeps the mean)
    const = Upsample(1).double()(torch.full((1, 1, h, w), 2.0, dtype=torch.float64))
    np.testing.assert_allclose(const.numpy(), 2.0, atol=1e-12)


def test_official_checkpoint_loads_strictly(tmp_path):
    sd = official_generator_state(ngf=8, n_blocks=9, seed=3)
    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path)
    gen, mode = load_generator(path)
    assert mode == "cut" and gen.ngf == 8 and gen.n_blocks == 9
    for k, v in gen.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # a DataParallel-prefixed file loads as well
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dp.pth")
    gen2, _ = load_generator(tmp_path / "dp.pth")
    assert torch.equal(gen2.model[1].weight, sd["model.1.weight"])


def test_mismatched_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    sd = official_generator_state(ngf=8, n_blocks=9)
    sd.pop("model.22.weight")
    sd["model.23.weight"] = torch.zeros(16)
    g = ResnetGenerator(ngf=8)
    with pytest.raises(ValueError) as err:
        load_state_dict_checked(g, sd, "gen.pth")
    msg = str(err.value)
    assert "gen.pth" in msg and "missing keys: model.22.weight" in msg and "unexpected keys: model.23.weight" in msg
    sd = official_generator_state(ngf=8, n_blocks=9)
    sd["model.4.weight"] = torch.zeros(16, 8, 5, 5)
    with pytest.raises(ValueError, match=r"shape mismatches.*model\.4\.weight"):
        load_state_dict_checked(g, sd, "gen.pth")


def test_wrong_filter_values_rejected(tmp_path):
    sd = official_generator_state(ngf=8, n_blocks=9)
    sd["model.7.filt"] = torch.full_like(sd["model.7.filt"], 1 / 9)  # a box filter
    torch.save(sd, tmp_path / "g.pth")
    with pytest.raises(ValueError, match=r"model\.7\.filt.*blur filter"):
        load_generator(tmp_path / "g.pth")
    d = PatchGANDiscriminator(ndf=4)
    dsd = d.state_dict()
    dsd["model.2.filt"] = dsd["model.2.filt"] * 2
    with pytest.raises(ValueError, match=r"model\.2\.filt"):
        load_state_dict_checked(PatchGANDiscriminator(ndf=4), dsd)


def test_not_a_generator(tmp_path):
    torch.save({"foo": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="not a CUT generator"):
        load_generator(tmp_path / "x.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_generator(tmp_path / "nope.pth")


def test_patch_sample_f_shared_ids_and_unit_norm():
    torch.manual_seed(0)
    f = PatchSampleF([3, 5], nc=8)  # default init: outputs far from 0, so the 1e-7 guard is negligible
    feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    gen = torch.Generator().manual_seed(0)
    out, ids = f(feats, num_patches=6, generator=gen)
    assert [tuple(o.shape) for o in out] == [(2, 6, 8), (2, 4, 8)]  # layer 1 has only 4 locations
    assert len(set(ids[0].tolist())) == 6 and sorted(ids[1].tolist()) == [0, 1, 2, 3]
    for o in out:
        np.testing.assert_allclose(o.norm(dim=-1).detach().numpy(), 1.0, atol=1e-3)
    # the same ids for every image: image 1's sample at slot p is the feature at location ids[p]
    raw, _ = f.sample(feats, 6, ids)
    loc = ids[0][2]
    assert torch.equal(raw[0][1, 2], feats[0][1, :, loc // 4, loc % 4])
    # the query call reuses the key call's ids
    out2, ids2 = f(feats, num_patches=6, patch_ids=ids)
    assert all(torch.equal(a, b) for a, b in zip(ids, ids2))
    assert torch.allclose(out[0], out2[0])


def test_sincut_networks():
    g, d = SinCUTGenerator(), SinCUTDiscriminator()
    assert 3.0e6 < count_parameters(g) < 3.15e6 and 5.7e6 < count_parameters(d) < 6.0e6
    assert any(k.startswith("encoder.convs.") for k in g.state_dict())
    assert any(k.startswith("decoder.convs.") for k in g.state_dict())
    x = torch.randn(4, 3, 64, 64)
    y, feats = g.forward_with_features(x, (0, 2, 4))
    assert y.shape == x.shape and torch.equal(feats[0], x)
    assert [tuple(f.shape) for f in feats[1:]] == [(4, 160, 32, 32)] * 2
    assert d(x).shape == (4, 1)
    assert g(torch.randn(1, 3, 36, 52)).shape == (1, 3, 36, 52)  # whole images, sides multiple of 4


def test_l2_normalize_zero_vector_has_finite_gradient():
    from selfsup.cut.networks import l2_normalize

    x = torch.zeros(2, 4, requires_grad=True)
    x.data[1] = torch.tensor([3.0, 0.0, 4.0, 0.0])
    y = l2_normalize(x)
    torch.testing.assert_close(y[1].detach(), torch.tensor([0.6, 0.0, 0.8, 0.0]), rtol=1e-6, atol=1e-6)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
