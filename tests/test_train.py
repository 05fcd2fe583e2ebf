"""metastructure.train: the training loop's mechanics; the paper's learning claims at small sizes.

The claims (marked slow) train a 16-32-64 U-Net for 300 steps on 32 synthetic
NUC-like 64x64 images and evaluate on 16 held-out images, for two training keys
(0 and 1, the first two, not picked): a claim must hold for each.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metastructure import data, density, losses, metrics, nets, noise, ntm, train


# ------------------------------------------------------------------ training mechanics
@pytest.fixture(scope="module")
def nuc():
    """The claims' data: 32 training and 16 test images of 64^2."""
    return data.nuclei(jax.random.key(0), 32, size=64), data.nuclei(jax.random.key(1), 16, size=64)


# the mechanics need no accuracy: 32^2 images and a two-level U-Net keep their compiles short
SMALL = nets.unet(widths=(4, 8))


@pytest.fixture(scope="module")
def small():
    return data.nuclei(jax.random.key(0), 16, size=32), data.nuclei(jax.random.key(1), 4, size=32)


def test_same_key_bitwise_identical_and_fit_many(small):
    tr, _ = small
    kw = dict(steps=5, batch_size=4, progress=False, model=SMALL)
    a = train.fit(jax.random.key(3), tr.images, tr.masks, **kw)
    b = train.fit(jax.random.key(3), tr.images, tr.masks, **kw)
    c = train.fit(jax.random.key(4), tr.images, tr.masks, **kw)
    la, lb, lc = (jax.tree_util.tree_leaves(r.params) for r in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(la, lc, strict=True))
    many = train.fit_many(jnp.stack([jax.random.key(3), jax.random.key(4)]), tr.images, [tr.masks, tr.masks], **kw)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(many[1].params), lc, strict=True))
    assert a.regime == "fixed" and len(a.history["loss"]) == 5


class _Compiles:
    """Counts XLA backend compilations (jax.monitoring's public event listener)."""

    count = 0

    @classmethod
    def listen(cls, name, duration, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            cls.count += 1


jax.monitoring.register_event_duration_secs_listener(_Compiles.listen)


def test_label_noise_compiles_once_per_kind_and_matches_a_closure(small):
    tr, te = small
    kw = dict(steps=3, batch_size=4, progress=False, model=SMALL)
    a = train.fit(jax.random.key(3), tr.images, tr.masks, noise=noise.LabelNoise("sample", 0.1), **kw)
    before = _Compiles.count
    train.fit(jax.random.key(3), tr.images, tr.masks, noise=noise.LabelNoise("sample", 0.3), **kw)
    assert _Compiles.count == before  # a second rate reuses the compiled step: nothing compiles
    train.fit(jax.random.key(3), tr.images, tr.masks, noise=noise.LabelNoise("flip", 0.3, 0.1), **kw)
    assert _Compiles.count > before  # another kind is another program
    b = train.fit(jax.random.key(3), tr.images, tr.masks, noise=lambda k, y: noise.sample(k, y, 0.1), **kw)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a.params),
                                                    jax.tree_util.tree_leaves(b.params), strict=True))
    # the result knows its label type: validation at t* without passing T
    c = train.fit(jax.random.key(3), tr.images, tr.masks, noise=noise.LabelNoise("flip", 0.2, 0.1),
                  validation=(te.images[:2], te.masks[:2]), val_every=3, **kw)
    assert c.regime == "fresh" and c.label_type.name == "flip 0.2 0.1"
    assert c.history["val"][0]["t_star"]["threshold"] == pytest.approx(0.45)


def test_validation_with_random_labels_records_no_t_star(small):
    """Regression: random labels (f + b = 1) used to stop fit at the first validation with a ValueError."""
    tr, te = small
    r = train.fit(jax.random.key(0), tr.images, tr.masks, noise=noise.LabelNoise("random", 0.3), steps=2,
                  batch_size=4, validation=(te.images[:2], te.masks[:2]), val_every=1, progress=False, model=SMALL)
    assert [v["t_star"] for v in r.history["val"]] == [None, None]  # recorded: no t*
    # the last validation (after the last step) scores the final network on the clean validation masks: its oracle
    # Dice is metrics.best_threshold's for r.predict (catches validation scored against the noisy labels or other
    # images, or before the last step)
    p = r.predict(te.images[:2])
    assert r.history["val_step"][-1] == 2
    assert r.history["val"][-1]["oracle"]["dice"] == pytest.approx(
        metrics.best_threshold(p, te.masks[:2], metric="dice")[1], abs=1e-6)
    fixed = np.asarray(noise.random_labels(jax.random.key(1), tr.masks.shape, 0.3)).astype(np.int32)
    r = train.fit(jax.random.key(0), tr.images, fixed, label_type=ntm.random_matrix(0.3), steps=1, batch_size=4,
                  validation=(te.images[:2], te.masks[:2]), progress=False, model=SMALL)
    assert r.history["val"][0]["t_star"] is None and r.regime == "fixed"


def test_fit_remembers_its_label_type(small):
    tr, te = small
    kw = dict(steps=2, batch_size=4, progress=False, model=SMALL)
    sampled = np.asarray(noise.sample(jax.random.key(1), tr.masks, 0.1))
    r = train.fit(jax.random.key(0), tr.images, sampled, label_type=noise.LabelNoise("sample", 0.1), **kw)
    e = r.evaluate(te.images[:2], te.masks[:2], validation=(te.images[2:4], te.masks[2:4]))
    assert e["t_star"]["threshold"] == 0.05 and not e["t_star"]["invert"] and "validation" in e
    p = r.predict(te.images[:2])
    assert e == metrics.evaluate(p, te.masks[:2], label_type=ntm.sample_matrix(0.1),
                                 validation=(r.predict(te.images[2:4]), te.masks[2:4]))
    # with the training images and labels: the level protocol, half its output on the labelled foreground
    own = r.evaluate(te.images[:2], te.masks[:2], training=(tr.images, sampled))
    assert own["level"]["threshold"] == pytest.approx(
        metrics.level_threshold(r.predict(tr.images), sampled, label_type=ntm.sample_matrix(0.1)))
    assert "level" not in e
    assert "t_star" not in train.fit(jax.random.key(0), tr.images, sampled, **kw).evaluate(te.images[:2],
                                                                                           te.masks[:2])
    with pytest.raises(ValueError, match="pass only one"):
        train.fit(jax.random.key(0), tr.images, tr.masks, noise=noise.LabelNoise("sample", 0.1),
                  label_type=noise.LabelNoise("sample", 0.1), **kw)
    with pytest.raises(ValueError, match="skeleton"):  # fixed skeletons: fit cannot see the clean masks
        train.fit(jax.random.key(0), tr.images, sampled, label_type=noise.LabelNoise("skeleton"), **kw)
    sk = train.fit(jax.random.key(0), tr.images, tr.masks, noise=noise.LabelNoise("skeleton"), **kw)
    s = float(np.asarray(noise.skeletonize(tr.masks)).sum() / tr.masks.sum())
    np.testing.assert_allclose(sk.label_type, ntm.sample_matrix(s), atol=1e-12)  # T of the training pairs


def test_fit_is_the_documented_loop_with_augmentation_init_params_and_callback(small):
    """fit = for each step i: k = fold_in(k_loop, i); (kb, kn, ka) = split(k, 3); a batch drawn by kb without
    replacement, augmented by ka, one ``train.step``; started from ``init_params`` when given."""
    tr, _ = small
    x, y = jnp.asarray(tr.images[:8]), jnp.asarray(tr.masks[:8])
    model = SMALL
    key, steps, bs = jax.random.key(7), 4, 4
    start = train.fit(jax.random.key(1), x, y, model=model, steps=3, batch_size=bs, progress=False).params
    seen = []
    r = train.fit(key, x, y, model=model, steps=steps, batch_size=bs, augment=True, init_params=start,
                  val_every=3, callback=lambda i, res: seen.append((i, res.params)) or i, progress=False)
    opt = train.make_optimizer("adam", learning_rate=1e-3)
    _, k_loop = jax.random.split(key)
    state = train.TrainState(start, opt.init(start), jnp.zeros((), jnp.int32))
    one_step = jax.jit(functools.partial(train.step, model=model, optimizer=opt, loss=losses.bce_with_logits))
    want_losses, want_params = [], {}
    for i in range(steps):
        kb, _, ka = jax.random.split(jax.random.fold_in(k_loop, i), 3)
        idx = jax.random.choice(kb, x.shape[0], (bs,), replace=False)
        xb, yb = train.augment_dihedral(ka, x[idx], y[idx])
        state, value = one_step(state, xb, yb)
        want_losses.append(float(value))
        want_params[i + 1] = state.params
    np.testing.assert_allclose(r.history["loss"], want_losses, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(r.params), jax.tree_util.tree_leaves(want_params[steps]),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the callback ran every val_every steps and at the last, with the parameters of that step
    assert [i for i, _ in seen] == [3, 4] and r.history["callback"] == [3, 4] and r.history["val_step"] == [3, 4]
    for a, b in zip(jax.tree_util.tree_leaves(seen[0][1]), jax.tree_util.tree_leaves(want_params[3]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the loop really used each ingredient: without augmentation or from a fresh init, other numbers
    plain = train.fit(key, x, y, model=model, steps=steps, batch_size=bs, init_params=start, progress=False)
    fresh = train.fit(key, x, y, model=model, steps=steps, batch_size=bs, augment=True, progress=False)
    assert plain.history["loss"] != r.history["loss"] and fresh.history["loss"][0] != r.history["loss"][0]
    zero = train.fit(key, x, y, model=model, steps=0, init_params=start, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(zero.params),
                                                    jax.tree_util.tree_leaves(start), strict=True))


def test_make_step_is_fits_step(small, monkeypatch):
    """fit runs the step make_step builds for its configuration (cached: one object), from train.init, with
    the step's key fold_in(k_loop, i): the same loop by hand gives fit's parameters and losses bitwise."""
    tr, _ = small
    x, y = tr.images[:8], tr.masks[:8]
    opt = train.make_optimizer("adam", learning_rate=1e-3, weight_decay=0.0)  # fit's call: the same object
    step = train.make_step(SMALL, opt, loss=losses.bce_with_logits, batch_size=4, augment=True)
    assert train.make_step(SMALL, opt, loss=losses.bce_with_logits, batch_size=4, augment=True) is step
    built = []
    real = train.make_step
    monkeypatch.setattr(train, "make_step", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    r = train.fit(jax.random.key(2), x, y, model=SMALL, steps=3, batch_size=4, augment=True, progress=False)
    assert built == [step]
    k_init, k_loop = jax.random.split(jax.random.key(2))
    state = train.init(k_init, SMALL, 1, opt)
    assert int(state.step) == 0
    values = []
    for i in range(3):
        state, v, store = step(state, jax.random.fold_in(k_loop, i), jnp.asarray(x), jnp.asarray(y))
        values.append(float(v))
    assert store is None and int(state.step) == 3 and values == r.history["loss"]
    for a, b in zip(jax.tree_util.tree_leaves(r.params), jax.tree_util.tree_leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_make_step_with_given_batches_targets_at_load_and_in_step_selection():
    """A per-pixel model commutes with the dihedral transforms, so the selection written back for the batch
    is the selection of the untransformed images; targets(key, labels, aux) gets the step's first key of
    split(key, 2) and the call's aux; the loss is the loss of those targets."""
    def init(key, cin):
        return {"w": jnp.ones((cin, 1)), "b": jnp.zeros((1,))}

    model = nets.Model(init, lambda p, x: x @ p["w"] + p["b"], name="pixel")
    opt = train.make_optimizer("sgd", learning_rate=1e-3)
    seen = []

    def targets(k, yb, rate):
        seen.append(rate)
        return noise.sample(k, yb, rate).astype(jnp.float32)

    step = train.make_step(model, opt, loss=losses.bce_with_logits, targets=targets, augment=True,
                           select=lambda logits: logits[..., 0] > 0.0)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(6, 8, 8, 1)), jnp.float32)
    y = jnp.asarray(rng.random((6, 8, 8)) < 0.5, jnp.int32)
    idx = jnp.asarray([4, 1, 2])
    key = jax.random.key(11)
    state0 = train.fresh_state(model.init(None, 1), opt)
    state, value, store = step(state0, key, x, y, jnp.float32(0.5), idx, jnp.zeros((6, 8, 8), bool))
    assert int(state.step) == 1 and len(seen) == 1  # traced once
    want = np.zeros((6, 8, 8), bool)
    want[[4, 1, 2]] = np.asarray(x)[[4, 1, 2], ..., 0] > 0  # the output before the update, in place
    np.testing.assert_array_equal(store, want)
    ty = noise.sample(jax.random.split(key)[0], y[idx], 0.5).astype(jnp.float32)
    # the per-pixel loss is a mean over pixels: the augmentation only reorders them
    assert float(value) == pytest.approx(float(losses.bce_with_logits(x[idx], ty)), rel=1e-5)
    assert not np.array_equal(np.asarray(state.params["w"]), np.asarray(state0.params["w"]))
    with pytest.raises(ValueError, match="batch_size"):
        train.make_step(model, opt, loss=losses.bce_with_logits, batch_size=0)
    with pytest.raises(TypeError, match="select"):
        train.make_step(model, opt, loss=losses.bce_with_logits, select="otsu")


def test_random_crop_cuts_one_window_per_sample_uniformly():
    """Each sample's image and labels (with trailing axes) are the same window of the input (numpy slicing as
    the oracle), and the window's corner is uniform over the positions that keep it inside (chi-square over
    many draws)."""
    n, h, w = 3, 5, 7
    x = jnp.arange(n * h * w * 2, dtype=jnp.float32).reshape(n, h, w, 2)
    soft = jnp.stack([x[..., 0], -x[..., 0]], axis=-1)  # (N, H, W, M) soft targets ride along
    corners = []
    for i in range(400):
        xc, yc = train.random_crop(jax.random.key(i), x, soft, (3, 4))
        assert xc.shape == (n, 3, 4, 2) and yc.shape == (n, 3, 4, 2)
        for j in range(n):
            r, c = divmod(int(xc[j, 0, 0, 0]) // 2 - j * h * w, w)
            np.testing.assert_array_equal(xc[j], np.asarray(x)[j, r:r + 3, c:c + 4])
            np.testing.assert_array_equal(yc[j], np.asarray(soft)[j, r:r + 3, c:c + 4])
            corners.append(r * 4 + c)  # 3 x 4 positions: r in 0..2, c in 0..3
    counts = np.bincount(corners, minlength=12)
    assert counts.size == 12
    expected = len(corners) / 12
    assert ((counts - expected) ** 2 / expected).sum() < 31.3  # chi-square, 11 dof, p = 0.001
    with pytest.raises(ValueError, match="fit in"):
        train.random_crop(jax.random.key(0), x, soft, (6, 4))


def test_fit_on_crops_is_the_documented_step(small):
    """fit(crop=c) runs make_step(crop=window): by hand, the key splits into batch, targets, augmentation and
    crop keys, the window is cut after the targets are made (a fresh draw on whole images) and before the
    dihedral transform, and the step is train.step: the same parameters and losses. A crop covering the
    images is whole-image training, bitwise; one a U-Net cannot take, and crop with select, are refused."""
    tr, _ = small
    x, y = jnp.asarray(tr.images[:8]), jnp.asarray(tr.masks[:8])
    kw = dict(model=SMALL, steps=3, batch_size=4, augment=True, progress=False)
    lab = noise.LabelNoise.parse("flip 0.2 0.1")
    whole = train.fit(jax.random.key(2), x, y, noise=lab, **kw)
    for c in (32, 40):
        same = train.fit(jax.random.key(2), x, y, noise=lab, crop=c, **kw)
        for a, b in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(same.params), strict=True):
            np.testing.assert_array_equal(a, b)
    r = train.fit(jax.random.key(2), x, y, noise=lab, crop=16, **kw)
    assert r.predict(x).shape == (8, 32, 32)  # trained on 16^2 windows, applied to whole images
    opt = train.make_optimizer("adam", learning_rate=1e-3, weight_decay=0.0)
    k_init, k_loop = jax.random.split(jax.random.key(2))
    state = train.init(k_init, SMALL, 1, opt)
    for i in range(3):
        k_batch, k_targets, k_augment, k_crop = jax.random.split(jax.random.fold_in(k_loop, i), 4)
        idx = jax.random.choice(k_batch, 8, (4,), replace=False)
        yb = lab(k_targets, y[idx])  # the whole images' labels
        xb, yb = train.random_crop(k_crop, x[idx], yb, (16, 16))
        t = jax.random.randint(k_augment, (4,), 0, 8)
        state, v = train.step(state, train.dihedral(t, xb), train.dihedral(t, yb), model=SMALL, optimizer=opt,
                              loss=losses.bce_with_logits)
        assert float(v) == pytest.approx(r.history["loss"][i], rel=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(r.params), jax.tree_util.tree_leaves(state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="cannot train on 15 x 15 crops"):
        train.fit(jax.random.key(2), x, y, crop=15, **kw)
    with pytest.raises(ValueError, match="crop"):
        train.fit(jax.random.key(2), x, y, crop=0, **kw)
    with pytest.raises(TypeError, match="crop"):
        train.fit(jax.random.key(2), x, y, crop=16.0, **kw)
    opt = train.make_optimizer("sgd", learning_rate=1e-3)
    with pytest.raises(ValueError, match="crop and select"):
        train.make_step(SMALL, opt, loss=losses.bce_with_logits, crop=(16, 16), select=lambda z: z[..., 0] > 0)
    with pytest.raises(ValueError, match="pair"):
        train.make_step(SMALL, opt, loss=losses.bce_with_logits, crop=16)


def test_progress_bar_and_fresh_state():
    assert train.progress_bar(3, enabled=False) is None
    bar = train.progress_bar(3, enabled=True, desc="x")
    assert bar.total == 3
    bar.close()
    opt = train.make_optimizer("sgd", learning_rate=0.1)
    params = {"w": jnp.ones(3)}
    s = train.fresh_state(params, opt)
    assert int(s.step) == 0 and s.params is params
    ref = opt.init(params)
    for a, b in zip(jax.tree_util.tree_leaves(s.opt_state), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_augmentation_keeps_image_and_label_aligned():
    for shape in ((8, 16, 16, 1), (8, 12, 20, 1)):  # non-square: the 4 shape-keeping transforms
        x = jax.random.normal(jax.random.key(0), shape)
        lab = x[..., 0]
        xa, la = train.augment_dihedral(jax.random.key(1), x, lab)
        np.testing.assert_array_equal(xa[..., 0], la)
        assert xa.shape == x.shape and not np.array_equal(np.asarray(xa), np.asarray(x))
    y = (np.asarray(x[..., 0]) > 0).astype(np.float32)
    r = train.fit(jax.random.key(2), x, y, model=nets.unet(widths=(4, 8)), steps=2, augment=True, progress=False)
    assert r.predict(x).shape == (8, 12, 20)


def test_dihedral_on_non_square_images_and_test_time_augmentation():
    """dihedral: numpy's rot90 / flip as the oracle; non-square images keep their shape (odd t -> t - 1).
    predict(tta=True): the mean over the transforms, each prediction mapped back (numpy oracle), binary and
    multi-class; 4 transforms on non-square images."""
    def np_dihedral(x, t):
        r = np.rot90(x, t % 4, axes=(0, 1))
        return r[:, ::-1] if t >= 4 else r

    rng = np.random.default_rng(0)
    for shape in ((2, 10, 10, 3), (2, 8, 12, 3)):
        a = rng.normal(size=shape).astype(np.float32)
        for t in range(8):
            tt = t - t % 2 if shape[1] != shape[2] else t
            y = np.asarray(train.dihedral(jax.numpy.full((2,), t), a))
            np.testing.assert_array_equal(y, np.stack([np_dihedral(ai, tt) for ai in a]))
            np.testing.assert_array_equal(np.asarray(train.dihedral(jax.numpy.full((2,), t), y, inverse=True)), a)
    for m_out, shape in ((None, (3, 16, 16, 1)), (3, (2, 16, 16, 1)), (None, (2, 16, 24, 1))):
        model = nets.unet(widths=(4, 8), out_channels=m_out or 1)
        fit = train.FitResult(model.init(jax.random.key(1), 1), model, {}, "fixed", m_out)
        x = rng.normal(size=shape).astype(np.float32)
        ts = range(8) if shape[1] == shape[2] else (0, 2, 4, 6)
        ref = np.mean([np.stack([np_dihedral(p, (8 - t) % 4 if t < 4 else t) for p in
                                 fit.predict(np.stack([np_dihedral(xi, t) for xi in x]))]) for t in ts], axis=0)
        got = fit.predict(x, tta=True)
        assert got.shape == fit.predict(x).shape
        np.testing.assert_allclose(got, ref, atol=1e-6)
        assert not np.allclose(got, fit.predict(x), atol=1e-4)  # the network is not dihedrally invariant


def test_sgd_schedule_and_multiclass_fit():
    s = data.scenes(jax.random.key(2), 8, size=32)
    r = train.fit(jax.random.key(0), s.images, s.masks, num_classes=4, loss="ce", steps=20,
                  optimizer=train.make_optimizer("sgd", learning_rate=0.05, weight_decay=1e-3, decay_every=10),
                  progress=False, model=nets.unet(widths=(8, 16), out_channels=4))
    p = r.predict(s.images[:2])
    assert p.shape == (2, 32, 32, 4)
    np.testing.assert_allclose(p.sum(-1), 1, atol=1e-5)
    assert r.history["loss"][-1] < r.history["loss"][0]
    # multi-class validation with a label type: mIoU, and the Theorem-2 correction where T is invertible
    v = train.fit(jax.random.key(0), s.images, s.masks, num_classes=4, loss="ce", steps=2, progress=False,
                  model=nets.unet(widths=(8, 16), out_channels=4), noise=noise.LabelNoise("clean"),
                  validation=(s.images[:2], s.masks[:2]), val_every=1)
    assert [set(h) for h in v.history["val"]] == [{"miou", "accuracy", "miou_corrected"}] * 2
    assert v.history["val"][-1]["miou_corrected"] == v.history["val"][-1]["miou"]  # T = I changes nothing


def test_fit_rejects_bad_input(small):
    tr, _ = small
    with pytest.raises(ValueError, match="images"):
        train.fit(jax.random.key(0), tr.images[..., 0], tr.masks, steps=1)
    with pytest.raises(ValueError, match="labels"):
        train.fit(jax.random.key(0), tr.images, tr.masks[:3], steps=1)
    with pytest.raises(ValueError, match="loss"):
        train.fit(jax.random.key(0), tr.images, tr.masks, steps=1, loss="hinge")


def test_validation_masks_leave_ignore_pixels_out_and_need_a_labelled_one(small):
    """Regression (issue 31, item 8's callers): fit accepted -1 in binary validation masks, then its first
    validation refused them (metrics.evaluate without ignore); all -1 would have scored NaN (1.0 before)."""
    tr, te = small
    vm = te.masks[:2].copy()
    vm[:, :4] = -1
    r = train.fit(jax.random.key(0), tr.images, tr.masks, steps=1, batch_size=4, validation=(te.images[:2], vm),
                  progress=False, model=SMALL)
    p, keep, oracle = r.predict(te.images[:2]), vm != -1, r.history["val"][-1]["oracle"]
    pred, truth = p[keep] > oracle["threshold"], vm[keep] == 1  # the labelled pixels alone, counted by hand
    assert oracle["dice"] == pytest.approx(2 * np.sum(pred & truth) / (pred.sum() + truth.sum()), abs=1e-6)
    with pytest.raises(ValueError, match="validation masks have no labelled pixel"):
        train.fit(jax.random.key(0), tr.images, tr.masks, steps=1, validation=(te.images[:2], np.full_like(vm, -1)),
                  progress=False, model=SMALL)


# ------------------------------------------------------------------ the claims
@pytest.fixture(scope="module", params=[0, 1], ids=["key0", "key1"])
def seed(request):
    """The training key of every claim: each claim must hold for both."""
    return request.param


@pytest.fixture(scope="module")
def clean(nuc, seed):
    tr, te = nuc
    r = train.fit(jax.random.key(seed), tr.images, tr.masks, steps=300, progress=False)
    return float(metrics.dice(r.predict(te.images) > 0.5, te.masks))


@pytest.mark.slow
def test_clean_unet_reaches_dice_0_9(clean):
    assert clean >= 0.9


@pytest.mark.slow
def test_sampled_fresh_draws_match_clean_at_t_star(nuc, clean, seed):
    tr, te = nuc
    r = train.fit(jax.random.key(seed), tr.images, tr.masks, steps=300, progress=False,
                  noise=lambda k, y: noise.sample(k, y, 0.1))
    assert r.regime == "fresh"
    p = r.predict(te.images)
    assert abs(p[te.masks == 1].mean() - 0.1) < 0.03  # output on objects ~ p
    assert p[te.masks == 0].mean() < 0.01  # ~ 0 on background
    assert float(metrics.dice(p > 0.05, te.masks)) >= clean - 0.03


@pytest.mark.slow
def test_fixed_draw_on_a_small_set_memorises(nuc, seed):
    tr, te = nuc
    small = tr.take(slice(0, 4))
    fixed = np.asarray(noise.sample(jax.random.key(9), small.masks, 0.1))
    r = train.fit(jax.random.key(seed), small.images, fixed, batch_size=4, steps=400, val_every=25,
                  validation=(te.images, te.masks), label_type=ntm.sample_matrix(0.1), progress=False)
    d = [v["t_star"]["dice"] for v in r.history["val"]]
    assert max(d) - d[-1] > 0.05, d  # Dice at t* falls as the network learns the drawn pixels
    assert d[-1] < 0.6


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.45, 0.9])
def test_symmetric_flipping(nuc, clean, seed, rate):
    tr, te = nuc
    r = train.fit(jax.random.key(seed), tr.images, tr.masks, steps=300, progress=False,
                  noise=lambda k, y: noise.flip(k, y, rate, rate))
    m = density.matched_threshold(ntm.flip_matrix(rate, rate))
    assert m.threshold == pytest.approx(0.5) and m.invert == (rate > 0.5)
    assert float(metrics.dice(m.apply(r.predict(te.images)), te.masks)) >= clean - 0.05


@pytest.mark.slow
def test_random_labels_no_better_than_chance(nuc, seed):
    tr, te = nuc
    r = train.fit(jax.random.key(seed), tr.images, tr.masks, steps=200, progress=False,
                  noise=lambda k, y: noise.random_labels(k, y.shape, 0.3).astype(y.dtype))
    p = r.predict(te.images)
    assert abs(float(metrics.roc_auc(p, te.masks)) - 0.5) < 0.1
    prior = te.masks.mean()
    # the best any threshold does is to call everything foreground: 2 pi / (1 + pi)
    assert metrics.best_threshold(p, te.masks, metric="dice")[1] <= 2 * prior / (1 + prior) + 0.05
