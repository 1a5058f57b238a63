"""CUT / FastCUT / SinCUT training: the step against an official-style reference, the schedule,
the decay-phase crop switch, exact resumption, checkpoints, inference and the command line."""
import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.cli import main as selfsup_main
from selfsup.cut.infer import load_generator, translate_folder
from selfsup.cut.losses import patch_nce
from selfsup.cut.model import CUTConfig, CUTModel, flip_draw
from selfsup.cut.networks import l2_normalize
from selfsup.cut.train import TrainConfig, _UnalignedStream, load_checkpoint, lr_factor, train
from selfsup.data.unaligned import TransformSpec, load_rgb, pil_to_tensor, tensor_to_uint8, transform_image

from tiny_unaligned import make_single_pair, make_unaligned


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster than two and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(ngf=4, ndf=4, n_blocks=5)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_unaligned(tmp_path_factory.mktemp("unaligned"), n_train=5, n_test=3, size=40)


def tiny_cfg(data, out, mode="cut", **kw):
    base = dict(dataroot=str(data), out_dir=str(out), model=CUTConfig(mode=mode, **TINY), load_size=36,
                crop_size=32, schedule_unit="step", n_const=2, n_decay=2, device="cpu", preload=True,
                checkpoint_every=1, log_every=1, loader_threads=1)
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------------------------
# The step: same math as the official step structure
# ----------------------------------------------------------------------------------------------

def reference_step(m: CUTModel, real_A, real_B, flip, gen):
    """The official order and structure: separate D calls, keys re-encoded with autograd on (and
    detached in the loss), positions drawn per NCE term and layer, fp32."""
    c, G, D, F = m.cfg, m.netG, m.netD, m.netF
    flip = flip and c.flip_equivariance
    real = torch.cat([real_A, real_B]) if c.nce_idt else real_A
    if flip:
        real = torch.flip(real, [3])
    fake = G(real)
    fake_B, idt_B = fake[:1], fake[1:]
    for p in D.parameters():
        p.requires_grad_(True)
    m.optimizer_D.zero_grad()
    loss_D = 0.5 * ((D(fake_B.detach()) ** 2).mean() + ((D(real_B) - 1) ** 2).mean())
    loss_D.backward()
    m.optimizer_D.step()
    for p in D.parameters():
        p.requires_grad_(False)
    m.optimizer_G.zero_grad()
    m.optimizer_F.zero_grad()
    loss_gan = ((D(fake_B) - 1) ** 2).mean()

    def nce(src, tgt, flipped):
        fq = G.encode(tgt, c.nce_layers)
        if flipped:
            fq = [torch.flip(q, [3]) for q in fq]
        fk = G.encode(src, c.nce_layers)
        total = 0.0
        for i, (q, k) in enumerate(zip(fq, fk)):
            ids = torch.randperm(k.shape[2] * k.shape[3], generator=gen)[: c.num_patches]
            kp = l2_normalize(F.mlp(i)(k.flatten(2).transpose(1, 2)[:, ids]))
            qp = l2_normalize(F.mlp(i)(q.flatten(2).transpose(1, 2)[:, ids]))
            total = total + patch_nce(qp, kp, c.nce_T).mean() * c.lambda_NCE
        return total / len(c.nce_layers)

    loss_nce = nce(real_A, fake_B, flip)
    if c.nce_idt:
        loss_nce = 0.5 * (loss_nce + nce(real_B, idt_B, False))
    (loss_gan + loss_nce).backward()
    m.optimizer_G.step()
    m.optimizer_F.step()
    for p in D.parameters():
        p.requires_grad_(True)


@pytest.mark.parametrize("mode,flips", [("cut", [False, False]), ("fastcut", [True, False])])
def test_step_matches_official_structure(mode, flips):
    # float64: Adam's first updates are ±lr wherever a gradient is (analytically) ~0, e.g. the
    # biases before InstanceNorm, so float32 rounding alone would flip some of them. Real
    # differences in the step move parameters by ~lr = 2e-4; the tolerance is 1e-7.
    torch.manual_seed(0)
    ours = CUTModel(CUTConfig(mode=mode, **TINY), "cpu").double()
    ref = copy.deepcopy(ours)
    g = torch.Generator().manual_seed(5)
    batches = [((torch.rand(1, 3, 32, 32, generator=g) * 2 - 1).double(),
                (torch.rand(1, 3, 32, 32, generator=g) * 2 - 1).double()) for _ in flips]
    gen_ours, gen_ref = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for (a, b), flip in zip(batches, flips):
        losses = ours.train_step(a, b, flip=flip, generator=gen_ours)
        reference_step(ref, a, b, flip, gen_ref)
        assert set(losses) >= {"D", "G_GAN", "NCE", "G"}
    for name in ("netG", "netD", "netF"):
        for (k, p), q in zip(getattr(ours, name).state_dict().items(), getattr(ref, name).state_dict().values()):
            torch.testing.assert_close(p, q, rtol=1e-7, atol=1e-7, msg=f"{name}.{k}")
    # and the step did train every network
    torch.manual_seed(0)
    fresh = CUTModel(CUTConfig(mode=mode, **TINY), "cpu")
    for name in ("netG", "netD", "netF"):
        assert any(not torch.equal(p, q) for p, q in zip(getattr(ours, name).parameters(),
                                                         getattr(fresh, name).parameters())), name


def test_mode_presets():
    cut, fast, sin = (CUTConfig(mode=m).resolved() for m in ("cut", "fastcut", "sincut"))
    assert (cut.nce_idt, cut.lambda_NCE, cut.flip_equivariance, cut.n_epochs, cut.n_epochs_decay) == (True, 1.0, False, 200, 200)
    assert (fast.nce_idt, fast.lambda_NCE, fast.flip_equivariance, fast.n_epochs, fast.n_epochs_decay) == (False, 10.0, True, 150, 50)
    assert (sin.lambda_NCE, sin.lr, sin.beta1, sin.beta2, sin.batch_size, sin.num_patches) == (4.0, 2e-3, 0.0, 0.99, 16, 1)
    assert cut.lr == 2e-4 and (cut.beta1, cut.beta2) == (0.5, 0.999) and cut.nce_layers == (0, 4, 8, 12, 16)
    assert cut.num_patches == 256 and cut.nce_T == 0.07 and cut.batch_size == 1
    assert CUTConfig(mode="cut", lambda_NCE=3.0).resolved().lambda_NCE == 3.0
    with pytest.raises(ValueError, match="unknown mode"):
        CUTConfig(mode="cyclegan").resolved()


# ----------------------------------------------------------------------------------------------
# Schedule and data
# ----------------------------------------------------------------------------------------------

def test_lr_schedule_official_values():
    assert lr_factor(1, 200, 200) == 1.0 and lr_factor(200, 200, 200) == 1.0
    assert lr_factor(201, 200, 200) == pytest.approx(200 / 201)
    assert lr_factor(400, 200, 200) == pytest.approx(1 / 201)  # never 0
    assert lr_factor(151, 150, 50) == pytest.approx(50 / 51)


def test_lr_per_step_and_epoch_count(data, tmp_path):
    seen = {}
    cfg = tiny_cfg(data, tmp_path / "o", n_const=2, n_decay=3, checkpoint_every=100)
    train(cfg, on_log=lambda s, m: seen.setdefault(s, m["lr"]))
    lr = 2e-4
    assert [seen[s] for s in range(1, 6)] == pytest.approx([lr, lr, lr * 3 / 4, lr * 2 / 4, lr * 1 / 4])
    # epoch unit: epoch = max(|A|, |B|) items at batch 1, lr constant inside an epoch
    seen.clear()
    cfg = tiny_cfg(data, tmp_path / "e", schedule_unit="epoch", n_const=1, n_decay=1, checkpoint_every=100)
    train(cfg, on_log=lambda s, m: seen.setdefault(s, m["lr"]))
    assert len(seen) == 10 and set(seen[s] for s in range(1, 6)) == {lr} and set(seen[s] for s in range(6, 11)) == {lr / 2}


def test_decay_phase_resizes_without_crop(data):
    cfg = tiny_cfg(data, "unused")
    stream = _UnalignedStream(cfg, 1)
    a_const, _ = stream.batch(1, decay=False)
    a_decay, _ = stream.batch(1, decay=True)
    assert a_const.shape == a_decay.shape == (1, 3, 32, 32)
    perm = stream._perm(1)
    src = load_rgb(stream.data.A_paths[perm[0] % len(stream.data.A_paths)])
    resized = pil_to_tensor(src.resize((32, 32), Image.BICUBIC))
    assert torch.equal(a_decay[0], resized) or torch.equal(a_decay[0], resized.flip(2))
    # the constant phase crops a 32×32 window out of the 36×36 resize
    big = np.asarray(src.resize((36, 36), Image.BICUBIC))
    got = tensor_to_uint8(a_const[0], "round")
    windows = [big[y:y + 32, x:x + 32] for y in range(5) for x in range(5)]
    windows += [w[:, ::-1] for w in windows]
    assert any(np.array_equal(got, w) for w in windows)
    # crop_in_decay keeps cropping
    keep = _UnalignedStream(dataclasses.replace(cfg, crop_in_decay=True), 1)
    assert torch.equal(keep.batch(1, decay=True)[0], a_const)


def test_stream_is_a_function_of_seed_and_step(data):
    s1, s2 = _UnalignedStream(tiny_cfg(data, "x"), 1), _UnalignedStream(tiny_cfg(data, "x"), 1)
    for step in (3, 1, 7):
        assert all(torch.equal(x, y) for x, y in zip(s1.batch(step, False), s2.batch(step, False)))
    assert not torch.equal(s1.batch(1, False)[0], s1.batch(2, False)[0])
    other = _UnalignedStream(tiny_cfg(data, "x", seed=1), 1)
    assert not all(torch.equal(x, y) for x, y in zip(s1.batch(1, False), other.batch(1, False)))
    assert len(s1.data) == 5 and s1.steps_per_epoch == 5
    # FastCUT's coin: p 0.5 from (seed, step)
    draws = [flip_draw([0, s, 3]) for s in range(400)]
    assert 150 < sum(draws) < 250 and draws == [flip_draw([0, s, 3]) for s in range(400)]


def test_transform_rounds_to_multiple_of_four():
    img = Image.fromarray(np.zeros((30, 30, 3), np.uint8))
    out = transform_image(img, TransformSpec(load_size=(30, 30), crop_size=30, flip=False), None)
    assert out.shape == (3, 32, 32)  # 30 rounds to 32


# ----------------------------------------------------------------------------------------------
# Resumption and checkpoints
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_resume_equals_uninterrupted(data, tmp_path, mode):
    full = train(tiny_cfg(data, tmp_path / "full", mode))
    part_cfg = tiny_cfg(data, tmp_path / "part", mode)
    train(dataclasses.replace(part_cfg, max_steps=1))
    assert load_checkpoint(tmp_path / "part" / "latest.pt")["step"] == 1
    resumed = train(part_cfg)  # continues from step 1 to step 4, through the decay switch
    for name in ("netG", "netD", "netF"):
        for (k, a), b in zip(getattr(full, name).state_dict().items(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k}"
    a, b = full.optimizer_G.state_dict()["state"], resumed.optimizer_G.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)
    state = load_checkpoint(tmp_path / "part" / "latest.pt")
    assert state["step"] == 4 and state["config"]["model"]["mode"] == mode
    assert not list((tmp_path / "part").glob(".*"))  # no temporary files left behind


def test_checkpoint_mismatch_and_official_exports(data, tmp_path):
    train(tiny_cfg(data, tmp_path / "o", max_steps=1))
    other = tiny_cfg(data, tmp_path / "o", model=CUTConfig(mode="cut", ngf=8, ndf=4, n_blocks=5))
    with pytest.raises(ValueError, match="different settings.*model"):
        train(other)
    m = train(other, restart_on_mismatch=True)
    assert load_checkpoint(tmp_path / "o" / "latest.pt")["step"] == 4
    for f in ("latest_net_G.pth", "latest_net_D.pth", "latest_net_F.pth"):
        assert (tmp_path / "o" / f).is_file()
    g, mode = load_generator(tmp_path / "o" / "latest_net_G.pth")  # official layout, strict
    assert mode == "cut" and g.ngf == 8
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), m.netG.state_dict().values()))
    g2, _ = load_generator(tmp_path / "o" / "latest.pt")
    assert torch.equal(g2.model[1].weight, g.model[1].weight)


def test_a_checkpoint_is_not_resumed_on_other_training_images(data, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data, root)
    cfg = tiny_cfg(root, tmp_path / "o")
    train(dataclasses.replace(cfg, max_steps=2))
    train(cfg)  # same images: resumes, no complaint
    assert load_checkpoint(tmp_path / "o" / "latest.pt")["step"] == 4
    # regenerate one B image (same name, other pixels): same settings, other data
    victim = sorted((root / "trainB").iterdir())[0]
    pixels = np.asarray(Image.open(victim).convert("RGB"))
    Image.fromarray(np.ascontiguousarray(pixels[::-1])).save(victim)
    with pytest.raises(ValueError, match=r"training images in .*data"):
        train(cfg)
    log = []
    m = train(cfg, restart_on_mismatch=True, on_log=lambda step, metrics: log.append(step))
    assert log[0] == 1 and load_checkpoint(tmp_path / "o" / "latest.pt")["step"] == 4  # started over
    assert m.history[0]["step"] == 1


def test_files_fingerprint_names_and_bytes(tmp_path):
    from selfsup.data.unaligned import files_fingerprint

    (tmp_path / "a").mkdir()
    one, two = tmp_path / "a" / "1.png", tmp_path / "a" / "2.png"
    one.write_bytes(b"x")
    two.write_bytes(b"y")
    base = files_fingerprint([[one], [two]], tmp_path)
    assert base == files_fingerprint([[one], [two]], tmp_path)
    assert base != files_fingerprint([[one, two], []], tmp_path)   # which domain a file is in counts
    two.write_bytes(b"z")
    assert base != files_fingerprint([[one], [two]], tmp_path)     # content counts
    two.write_bytes(b"y")
    two.rename(tmp_path / "a" / "3.png")
    assert base != files_fingerprint([[one], [tmp_path / "a" / "3.png"]], tmp_path)  # names count


def test_visual_grids_with_ground_truth(data, tmp_path):
    grids = {}
    train(tiny_cfg(data, tmp_path / "v", image_every=2, num_visuals=2), on_images=lambda s, g: grids.setdefault(s, g))
    assert sorted(grids) == [2, 4]
    # 2 rows of input | output | ground truth, 32 px tiles, 2 px padding
    assert grids[2].shape == (2 * 34 + 2, 3 * 34 + 2, 3) and grids[2].dtype == np.uint8


# ----------------------------------------------------------------------------------------------
# Inference and command line
# ----------------------------------------------------------------------------------------------

def test_translate_folder_every_image_truncated(data, tmp_path):
    torch.manual_seed(0)
    from selfsup.cut.networks import ResnetGenerator, init_weights

    g = init_weights(ResnetGenerator(ngf=4, n_blocks=5))
    with torch.no_grad():  # make the output span the range
        g.model[-2].weight.mul_(300)
    written = translate_folder(g, data / "testA", tmp_path / "out", size=16, progress=False)
    assert [p.name for p in written] == ["000.png", "001.png", "002.png"]
    x = transform_image(load_rgb(data / "testA" / "001.png"), TransformSpec(16, 16, flip=False), None)
    with torch.no_grad():
        y = g(x[None])[0]
    want = ((np.transpose(y.clamp(-1, 1).numpy(), (1, 2, 0)) + 1) / 2 * 255).astype(np.uint8)
    got = np.asarray(Image.open(tmp_path / "out" / "001.png"))
    assert np.array_equal(got, want)
    rounded = tensor_to_uint8(y, "round")
    assert not np.array_equal(rounded, want)  # truncation is not rounding
    assert len(translate_folder(g, data / "testA", tmp_path / "two", size=16, num_test=2, progress=False)) == 2
    batched = translate_folder(g, data / "testA", tmp_path / "batched", size=16, batch_size=2, progress=False)
    for a, b in zip(written, batched):  # same math; batched kernels may round differently by one level
        diff = np.abs(np.asarray(Image.open(a)).astype(int) - np.asarray(Image.open(b)).astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01


def test_cli_train_and_test(data, tmp_path, capsys):
    out = tmp_path / "model"
    rc = selfsup_main(["translate", "train", "--dataroot", str(data), "--out", str(out), "--mode", "fastcut",
                       "--load-size", "36", "--crop-size", "32", "--ngf", "4", "--ndf", "4", "--n-blocks", "5",
                       "--steps", "1", "--steps-decay", "1", "--device", "cpu"])
    assert rc == 0 and (out / "latest_net_G.pth").is_file()
    rc = selfsup_main(["translate", "test", "--checkpoint", str(out / "latest_net_G.pth"), "--input",
                       str(data / "testA"), "--out", str(tmp_path / "res"), "--size", "32", "--device", "cpu"])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "res").iterdir()) == ["000.png", "001.png", "002.png"]
    assert "3 images written" in capsys.readouterr().out
    rc = selfsup_main(["translate", "test", "--checkpoint", str(tmp_path / "missing.pth"), "--input",
                       str(data / "testA"), "--out", str(tmp_path / "r2")])
    assert rc == 1 and "missing.pth" in capsys.readouterr().err


def test_sincut_trains_on_one_pair(tmp_path):
    root = make_single_pair(tmp_path / "pair", size=80)
    cfg = TrainConfig(dataroot=str(root), out_dir=str(tmp_path / "sin"),
                      model=CUTConfig(mode="sincut", ngf=1, ndf=1, batch_size=4), schedule_unit="step",
                      n_const=1, n_decay=1, device="cpu", sincut_epoch_length=64, checkpoint_every=1, log_every=1)
    logs = {}
    model = train(cfg, on_log=lambda s, m: logs.setdefault(s, m))
    assert sorted(logs) == [1, 2] and logs[1]["lr"] == pytest.approx(2e-3)
    assert {"loss_R1", "loss_idt", "loss_NCE", "loss_NCE_Y"} <= set(logs[1])
    g, mode = load_generator(tmp_path / "sin" / "latest_net_G.pth")
    assert mode == "sincut"
    written = translate_folder(model.netG, root / "testA", tmp_path / "res", size=None, progress=False)
    assert np.asarray(Image.open(written[0])).shape == (80, 80, 3)
    from selfsup.cut.train import _SingleImageStream

    per_crop = _SingleImageStream(cfg, 4).batch(1, False)[0]
    shared = _SingleImageStream(dataclasses.replace(cfg, sincut_shared_zoom=True), 4).batch(1, False)[0]
    assert per_crop.shape == shared.shape == (4, 3, 64, 64) and not torch.equal(per_crop, shared)
    (root / "trainB" / "second.png").write_bytes((root / "trainB" / "only.png").read_bytes())
    with pytest.raises(ValueError, match="exactly one image"):
        train(dataclasses.replace(cfg, out_dir=str(tmp_path / "sin2")))


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------

def test_translate_stage_and_evaluation(tmp_path, monkeypatch):
    import csv

    import yaml

    from selfsup.config import load_params
    from stages import translate as stage

    make_unaligned(tmp_path / "data" / "unaligned", n_train=5, n_test=3, size=40)
    params = {"seed": 0, "translate": {
        "modes": ["cut", "fastcut"], "data": "data/unaligned", "image_size": 32, "load_size": 36, "ngf": 4,
        "ndf": 4, "n_blocks": 5, "num_patches": 16, "steps_constant": 1, "steps_decay": 1, "log_every": 1,
        "image_every": 1, "checkpoint_every": 1, "classifier_steps": 5, "device": "cpu",
        "parallel_modes": False}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("SELFSUP_TRACKING", "off")
    stage.main()
    for mode in ("cut", "fastcut"):
        assert (tmp_path / "models" / "cut" / mode / "latest_net_G.pth").is_file()
        assert sorted(p.name for p in (tmp_path / "outputs" / "translate" / mode).iterdir()) == ["000.png", "001.png", "002.png"]
        assert (tmp_path / "reports" / "figures" / "translate" / f"{mode}_000002.png").is_file()
    with open(tmp_path / "reports" / "plots" / "translate.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2"]
    assert {"cut_loss_D", "cut_loss_NCE", "fastcut_loss_G_GAN", "cut_lr"} <= set(rows[0])
    scores = stage.evaluate_translations(load_params(tmp_path / "params.yaml"))
    assert set(scores) == {"cut", "fastcut", "identity", "untrained", "ground_truth"}
    for s in scores.values():
        assert {"structure_iou", "appearance_acc", "gt_l1", "gt_psnr", "classifier_test_acc"} <= set(s)
        assert 0 <= s["structure_iou"] <= 1 and 0 <= s["appearance_acc"] <= 1
    assert scores["identity"]["structure_iou"] > 0.7 > scores["untrained"]["structure_iou"]
    assert scores["ground_truth"]["gt_l1"] == 0.0          # the paired target scored against itself
    outputs = {p.name: p.read_bytes() for p in (tmp_path / "outputs" / "translate" / "cut").iterdir()}
    # DVC reruns the stage only when a dependency changed (training code included): a finished
    # run trains again, to the same bytes on the CPU
    ckpt = tmp_path / "models" / "cut" / "cut" / "latest.pt"
    before = ckpt.stat().st_mtime_ns
    stage.main()
    assert ckpt.stat().st_mtime_ns != before
    with open(tmp_path / "reports" / "plots" / "translate.csv") as fh:
        assert list(csv.DictReader(fh)) == rows
    assert {p.name: p.read_bytes() for p in (tmp_path / "outputs" / "translate" / "cut").iterdir()} == outputs
    # an interrupted run resumes where it stopped, with the whole run's curves
    cfg = stage.train_config(load_params(tmp_path / "params.yaml"), "cut")
    train(dataclasses.replace(cfg, max_steps=1, out_dir=str(tmp_path / "models" / "cut" / "cut")), resume=False)
    assert load_checkpoint(ckpt)["step"] == 1
    stage.main()
    assert load_checkpoint(ckpt)["step"] == 2
    with open(tmp_path / "reports" / "plots" / "translate.csv") as fh:
        assert list(csv.DictReader(fh)) == rows
    assert {p.name: p.read_bytes() for p in (tmp_path / "outputs" / "translate" / "cut").iterdir()} == outputs


# ----------------------------------------------------------------------------------------------
# Structure and appearance measures
# ----------------------------------------------------------------------------------------------

def test_structure_measures(data):
    from selfsup.cut.evaluate import (foreground_mask, l1_distance, load_masks, load_uint8_folder, mask_iou,
                                      psnr, score_translations, shape_mask)

    x, names = load_uint8_folder(data / "testA")
    gt, _ = load_uint8_folder(data / "testA_gtB", names=names)
    masks = load_masks(data / "testA_masks", names)
    for xi, gi, mi in zip(x, gt, masks):
        assert mask_iou(foreground_mask(xi, xi, ~mi), mi) > 0.9      # identity keeps the shapes
        assert mask_iou(foreground_mask(gi, xi, ~mi), mi) > 0.9      # the ground truth too
        assert mask_iou(shape_mask(gi, mi), mi) > 0.9
        flat = np.full_like(xi, 128)
        assert mask_iou(shape_mask(flat, mi), mi) == 0.0             # nothing left to see
        recoloured = np.clip(xi.astype(int) + 60, 0, 255).astype(np.uint8)
        recoloured[mi] = gi[mi]
        assert mask_iou(shape_mask(recoloured, mi), mi) > 0.9         # a new background colour is fine
        # a few stray white pixels in the background (a speck, a generator's border artefact) must
        # not erase the white stripes; a background painted with the stripes' colours must
        specked = gi.copy()
        far = ~np.pad(mi, 3)[:-6, 3:-3] & ~np.pad(mi, 3)[6:, 3:-3] & ~mi  # rows well clear of shapes
        line = np.flatnonzero(far.all(axis=1))
        assert len(line), "the test scenes leave a row clear of shapes"
        specked[line[0], :4] = 255
        assert mask_iou(shape_mask(specked, mi, support=0.0), mi) < mask_iou(shape_mask(specked, mi), mi)
        assert mask_iou(shape_mask(specked, mi), mi) > 0.9
        painted = gi.copy()
        painted[~mi] = gi[mi][np.arange((~mi).sum()) % mi.sum()]
        assert mask_iou(shape_mask(painted, mi), mi) < 0.2
    with pytest.raises(ValueError, match="support = 1.0"):
        shape_mask(gi, mi, support=1.0)
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    assert mask_iou(np.array([[1, 1], [0, 0]], bool), np.array([[1, 0], [1, 0]], bool)) == pytest.approx(1 / 3)
    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 51, np.uint8)
    assert l1_distance(a, b) == pytest.approx(0.2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 51 ** 2))
    scores = score_translations(x, x, masks, None, gt)
    assert scores["structure_iou"] > 0.9 and scores["gt_l1"] > 0 and "appearance_acc" not in scores


def test_domain_classifier_separates_the_domains(data):
    from selfsup.cut.evaluate import load_uint8_folder, train_domain_classifier

    a, _ = load_uint8_folder(data / "trainA")
    b, _ = load_uint8_folder(data / "trainB")
    report = train_domain_classifier(a, b, steps=60, batch_size=8, test_a=a[:2], test_b=b[:2])
    assert report.train_accuracy == 1.0 and report.test_accuracy == 1.0
    p = report.model.prob_b(np.concatenate([a, b]))
    assert p.shape == (10,) and (p[:5] < 0.5).all() and (p[5:] >= 0.5).all()


def test_translate_stage_trains_modes_in_parallel_processes(tmp_path, monkeypatch):
    """On the CPU the modes train in spawned workers; their curves and grids still reach MLflow."""
    import mlflow
    import yaml

    from stages import translate as stage

    make_unaligned(tmp_path / "data" / "unaligned", n_train=5, n_test=3, size=40)
    params = {"seed": 0, "translate": {
        "modes": ["cut", "fastcut"], "data": "data/unaligned", "out": "models/cut_parallel", "image_size": 32,
        "load_size": 36, "ngf": 4, "ndf": 4, "n_blocks": 5, "num_patches": 16, "steps_constant": 2,
        "steps_decay": 1, "log_every": 1, "image_every": 3, "checkpoint_every": 3, "device": "cpu",
        "parallel_modes": True}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)    # a 2-core machine, whatever runs the test

    def not_here(*args, **kwargs):
        raise AssertionError("a mode trained in the stage's own process")

    monkeypatch.setattr(stage, "train_mode", not_here)          # the workers import their own copy
    stage.main()
    for mode in ("cut", "fastcut"):
        assert len(list((tmp_path / "outputs" / "translate" / mode).iterdir())) == 3
    runs = mlflow.search_runs(experiment_names=["selfsup"],
                              filter_string="tags.`selfsup.stage` = 'translate' and params.out = 'models/cut_parallel'")
    assert len(runs) == 1
    client = mlflow.MlflowClient()
    run_id = runs.iloc[0]["run_id"]
    for mode in ("cut", "fastcut"):
        assert [m.step for m in client.get_metric_history(run_id, f"{mode}.loss_G")] == [1, 2, 3]
        assert [a.path for a in client.list_artifacts(run_id, f"figures/{mode}")] == [f"figures/{mode}/{mode}_000003.png"]
    assert runs.iloc[0][f"metrics.fastcut.test_images"] == 3


def test_stale_grids_are_removed(tmp_path):
    from stages.translate import remove_stale_grids

    for name in ("cut_000100.png", "cut_000300.png", "fastcut_000100.png", "sincut_000100.png", "notes.png"):
        (tmp_path / name).write_bytes(b"")
    remove_stale_grids(tmp_path, ["cut", "fastcut"], total_steps=200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut_000100.png", "fastcut_000100.png"]


def test_parallel_workers_get_a_fixed_share_of_the_cores():
    from stages.translate import worker_threads

    assert worker_threads(2, 2) == 1 and worker_threads(16, 2) == 8 and worker_threads(4, 3) == 1
    assert worker_threads(1, 2) == 1 and worker_threads(4, 0) == 4


def test_translate_stage_without_modes_leaves_empty_outputs(tmp_path, monkeypatch):
    import yaml

    from stages import translate as stage

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"translate": {"modes": [], "device": "cpu"}}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELFSUP_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("SELFSUP_TRACKING", "off")
    stage.main()
    for folder in ("models/cut", "outputs/translate", "reports/figures/translate"):
        assert (tmp_path / folder).is_dir() and not any((tmp_path / folder).iterdir())
    assert (tmp_path / "reports/plots/translate.csv").read_text().strip() == "step"
