"""metastructure.train on volumes (N, D, H, W, C): the 16 symmetries that keep z, windows, test-time
averaging, and a 3-D U-Net that learns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metastructure import data, metrics, nets, noise, train


def _symmetry_np(x, t):
    """numpy's oracle of symmetry t of one volume (D, H, W[, C]): rot90 t % 4 over (H, W), flip W when
    t % 8 >= 4, flip D when t >= 8."""
    r = np.rot90(x, t % 4, axes=(1, 2))
    r = r[:, :, ::-1] if t % 8 >= 4 else r
    return r[::-1] if t >= 8 else r


def test_volume_symmetries_are_the_16_that_keep_z():
    a = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    outs = []
    for t in range(16):
        got = np.asarray(train.dihedral(jnp.full((2,), t), jnp.asarray(a), ndim=3))
        np.testing.assert_array_equal(got, np.stack([_symmetry_np(v, t) for v in a]))
        back = train.dihedral(jnp.full((2,), t), jnp.asarray(got), inverse=True, ndim=3)
        np.testing.assert_array_equal(np.asarray(back), a)
        outs.append(got.tobytes())
    assert len(set(outs)) == 16
    wide = np.arange(3 * 4 * 6, dtype=np.float32).reshape(1, 3, 4, 6)  # H != W: no quarter turn keeps the shape
    shapes = {np.asarray(train.dihedral(jnp.full((1,), t), jnp.asarray(wide), ndim=3)).shape for t in range(16)}
    assert shapes == {wide.shape}
    assert len({np.asarray(train.dihedral(jnp.full((1,), t), jnp.asarray(wide), ndim=3)).tobytes()
                for t in range(16)}) == 8


def test_volume_augmentation_and_windows_move_image_and_labels_together():
    d, h, w = 4, 6, 6
    grid = np.arange(d * h * w, dtype=np.float32).reshape(1, d, h, w).repeat(5, axis=0)
    x, y = jnp.asarray(grid[..., None]), jnp.asarray(grid.astype(np.int32))
    xa, ya = train.augment_dihedral(jax.random.key(0), x, y)
    np.testing.assert_array_equal(np.asarray(xa[..., 0]), np.asarray(ya))
    # the draws reach flips of D: some sample's first plane is no longer plane 0's values
    assert any(set(np.asarray(ya[i, 0]).ravel()) != set(grid[0, 0].ravel()) for i in range(5))
    xc, yc = train.random_crop(jax.random.key(1), x, y, (2, 3, 4))
    assert xc.shape == (5, 2, 3, 4, 1) and yc.shape == (5, 2, 3, 4)
    np.testing.assert_array_equal(np.asarray(xc[..., 0]), np.asarray(yc))
    for v in np.asarray(yc):  # a contiguous window of the grid: index = (z * h + r) * w + c
        z0, r0, c0 = np.unravel_index(int(v[0, 0, 0]), (d, h, w))
        np.testing.assert_array_equal(v, grid[0, z0:z0 + 2, r0:r0 + 3, c0:c0 + 4])
    with pytest.raises(ValueError, match="must fit"):
        train.random_crop(jax.random.key(1), x, y, (5, 3, 4))


def test_volume_test_time_averaging_is_the_mean_over_the_symmetries():
    model = nets.unet(widths=(4, 8), ndim=3)
    params = model.init(jax.random.key(0), 1)
    fit = train.FitResult(params, model, {}, "fixed", None)
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 4, 8, 8, 1)))
    want = np.mean([np.stack([_inverse_np(q, t)  # each transformed volume's prediction mapped back
                              for q in fit.predict(np.stack([_symmetry_np(v, t) for v in x]))])
                    for t in range(16)], axis=0)
    assert not np.allclose(fit.predict(x), want, atol=1e-3)  # the network is not symmetric: averaging moves it
    np.testing.assert_allclose(fit.predict(x, tta=True), want, atol=1e-6)
    assert fit.predict(x).shape == (2, 4, 8, 8)


def _inverse_np(x, t):
    r = x[::-1] if t >= 8 else x
    r = r[:, :, ::-1] if t % 8 >= 4 else r
    return np.rot90(r, -(t % 4), axes=(1, 2))


@pytest.fixture(scope="module")
def volumes():
    """Blobs in noise: 10 volumes of 8 x 16 x 16, a threshold's task a small 3-D U-Net learns in a few steps."""
    rng = np.random.default_rng(0)
    z, r, c = np.mgrid[:8, :16, :16]
    masks = np.stack([((z - rng.uniform(2, 6)) / 2.5) ** 2 + ((r - rng.uniform(4, 12)) / 4) ** 2
                      + ((c - rng.uniform(4, 12)) / 4) ** 2 < 1 for _ in range(10)])
    images = data.as_images(masks + rng.normal(0, 0.3, masks.shape), strict=False, zscore=True, ndim=3)
    return images, masks


def test_fit_trains_a_3d_unet_on_volumes(volumes):
    images, masks = volumes
    model = nets.unet(widths=(4, 8), ndim=3, pool=(1, 2, 2))
    r = train.fit(jax.random.key(0), images[:8], masks[:8], model=model, steps=80, batch_size=4,
                  learning_rate=1e-2, augment=True, crop=12, progress=False)
    p = r.predict(images[8:], tta=True)
    assert p.shape == (2, 8, 16, 16)
    assert float(metrics.dice(p > 0.5, masks[8:])) > 0.9
    assert r.evaluate(images[8:], masks[8:])["fixed_0.5"]["dice"] > 0.9
    # fresh 3-D draws through a callable: exactly ceil(p N) voxels per volume
    seen = []
    r = train.fit(jax.random.key(1), images[:8], masks[:8], model=model, steps=2, batch_size=2, progress=False,
                  noise=lambda k, y: seen.append(y.shape) or noise.sample(k, y, 0.5, ndim=3))
    assert seen and seen[0] == (2, 8, 16, 16)


def test_fit_draws_a_3d_label_noise_as_its_function_does(volumes):
    """``fit(noise=Sample(p, ndim=3))`` (one compile per kind, traced rate) trains exactly as the callable that
    draws ``noise.sample(k, y, p, ndim=3)``: the same targets from the same keys, so the same parameters."""
    images, masks = volumes
    kw = dict(model=nets.unet(widths=(4, 8), ndim=3, pool=(1, 2, 2)), steps=3, batch_size=2, progress=False,
              augment=True)
    a = train.fit(jax.random.key(3), images[:6], masks[:6], noise=noise.Sample(0.3, ndim=3), **kw)
    b = train.fit(jax.random.key(3), images[:6], masks[:6], noise=lambda k, y: noise.sample(k, y, 0.3, ndim=3), **kw)
    for u, v in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)
    c = train.fit(jax.random.key(3), images[:6], masks[:6], noise=noise.Sample(0.9, ndim=3), **kw)
    assert not np.allclose(np.asarray(jax.tree_util.tree_leaves(a.params)[0]),
                           np.asarray(jax.tree_util.tree_leaves(c.params)[0]))


def test_fit_crops_the_sides_a_tuple_names(volumes):
    """``crop=(d, None, None)`` cuts the depth alone: the run of the explicit window (d, H, W), bitwise, and not
    the whole-volume run; all sides None is whole-volume training, bitwise; a tuple of another length, or a
    side below 1, is refused."""
    images, masks = volumes
    kw = dict(model=nets.unet(widths=(4, 8), ndim=3, pool=(1, 2, 2)), steps=3, batch_size=2, progress=False,
              augment=True)

    def leaves(crop):
        r = train.fit(jax.random.key(5), images[:6], masks[:6], crop=crop, **kw)
        return [np.asarray(v) for v in jax.tree_util.tree_leaves(r.params)]

    depth_only, explicit, whole = leaves((4, None, None)), leaves((4, 16, 16)), leaves(None)
    for u, v in zip(depth_only, explicit, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(depth_only, whole, strict=True))
    for u, v in zip(leaves((None, None, None)), whole, strict=True):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="one side per spatial axis"):
        train.fit(jax.random.key(0), images, masks, crop=(4, None), **kw)
    with pytest.raises(ValueError, match="crop"):
        train.fit(jax.random.key(0), images, masks, crop=(0, None, None), **kw)


def test_fit_on_volumes_refuses_what_it_cannot_do(volumes):
    images, masks = volumes
    with pytest.raises(ValueError, match=r"draws 2-D labels, but the volumes are 3-D.*ndim=3"):
        train.fit(jax.random.key(0), images, masks, noise=noise.LabelNoise("sample", 0.1), steps=1)
    with pytest.raises(ValueError, match="draws 3-D labels, but the images are 2-D"):
        train.fit(jax.random.key(0), images[:, 0], masks[:, 0], noise=noise.Sample(0.1, ndim=3), steps=1)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):  # a 2-D model given volumes
        train.fit(jax.random.key(0), images, masks, model=nets.unet(widths=(4, 8)), steps=1)
    with pytest.raises(ValueError, match=r"\(N, D, H, W\)"):
        train.fit(jax.random.key(0), images, masks[:, 0], model=nets.unet(widths=(4, 8), ndim=3), steps=1)
    with pytest.raises(ValueError, match="crops"):  # 9 is not divisible by the pooling
        train.fit(jax.random.key(0), images, masks, model=nets.unet(widths=(4, 8), ndim=3), crop=9, steps=1)
    assert dict(train.fit(jax.random.key(0), images, masks, steps=0).model.config)["ndim"] == 3  # the default
