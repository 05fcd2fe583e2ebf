"""metastructure.nets: shapes, features, jit and bad sizes."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metastructure import nets


# ------------------------------------------------------------------ nets
@pytest.mark.parametrize("model", [nets.unet(), nets.unet(widths=(8, 16), out_channels=4),
                                   nets.fcn(dilations=(1, 2, 4, 1))])
def test_nets_shapes_features_and_jit(model):
    cin = 3
    p = model.init(jax.random.key(0), cin)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, cin))
    out, feats = model.apply(p, x, features=True)
    assert out.shape == (2, 32, 32, dict(model.config)["out_channels"])
    assert feats and all(f.shape[0] == 2 for f in feats.values())
    np.testing.assert_allclose(jax.jit(model.apply)(p, x), out, atol=1e-5)
    assert nets.num_params(p) > 1000
    assert nets.unet() is nets.unet(), "cached: equal configurations share compiled steps"


def test_unet_rejects_bad_sizes():
    m = nets.unet()
    with pytest.raises(ValueError, match="divisible"):
        m.apply(m.init(jax.random.key(0), 1), jnp.zeros((1, 30, 32, 1)))
    with pytest.raises(ValueError, match="widths"):
        nets.unet(widths=(16,))


def test_unet_activation_leaks_where_relu_is_zero():
    """``activation="leaky_relu"`` is max(x, 0.01 x) after every 3x3 conv: the same parameters give the same
    output wherever no unit is negative, and an oracle: a one-level-deep check by hand on the first conv."""
    relu, leaky = nets.unet(widths=(4, 8)), nets.unet(widths=(4, 8), activation="leaky_relu")
    assert dict(leaky.config)["activation"] == "leaky_relu" and dict(relu.config)["activation"] == "relu"
    assert leaky is nets.unet(widths=(4, 8), activation="leaky_relu") and leaky is not relu
    p = relu.init(jax.random.key(0), 1)
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(leaky.init(jax.random.key(0), 1))
    x = jax.random.normal(jax.random.key(1), (1, 16, 16, 1))
    _, fr = relu.apply(p, x, features=True)
    _, fl = leaky.apply(p, x, features=True)
    # first level's first conv by hand (lax oracle), then each activation
    c1 = p["enc"][0][0]
    z = jax.lax.conv_general_dilated(x, c1["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + c1["b"]
    assert float(jnp.min(z)) < 0 < float(jnp.max(z))
    first_r, first_l = np.maximum(z, 0), np.where(z > 0, z, 0.01 * z)
    c2 = p["enc"][0][1]
    conv2 = lambda h: jax.lax.conv_general_dilated(h, c2["w"], (1, 1), "SAME",  # noqa: E731
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC")) + c2["b"]
    np.testing.assert_allclose(fr["enc0"], np.maximum(conv2(first_r), 0), atol=1e-5)
    z2 = conv2(first_l)
    np.testing.assert_allclose(fl["enc0"], np.where(z2 > 0, z2, 0.01 * z2), atol=1e-5)
    assert float(jnp.min(fl["enc0"])) < 0 == float(jnp.min(fr["enc0"]))
    with pytest.raises(ValueError, match="activation"):
        nets.unet(activation="gelu")


# ------------------------------------------------------------------ volumes
def test_3d_conv_against_scipy_and_pooling_against_skimage():
    """A 3-D conv layer is the zero-padded cross-correlation of every input channel with its 3x3x3 kernel
    (scipy.ndimage.correlate), then ReLU; pooling by (1, 2, 2) and (2, 2, 2) is skimage's block max, and
    upsampling repeats each voxel (seen through a U-Net whose convs all pass channel 0 on)."""
    from scipy import ndimage
    from skimage.measure import block_reduce

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 8, 2)).astype(np.float32)
    model = nets.fcn(widths=(3,), ndim=3)
    p = model.init(jax.random.key(0), 2)
    p["layers"][0]["b"] = jnp.asarray(rng.standard_normal(3), jnp.float32)
    w, b = np.asarray(p["layers"][0]["w"]), np.asarray(p["layers"][0]["b"])
    got = np.asarray(model.apply(p, jnp.asarray(x), features=True)[1]["layer0"])
    want = np.stack([[sum(ndimage.correlate(x[n, ..., i].astype(np.float64), w[..., i, o], mode="constant")
                          for i in range(2)) + b[o] for o in range(3)] for n in range(2)])
    np.testing.assert_allclose(got, np.maximum(np.moveaxis(want, 1, -1), 0), atol=1e-4)
    v = np.abs(x[..., :1]) + 0.1  # positive: the ReLUs pass it
    for f in ((1, 2, 2), (2, 2, 2)):
        m = nets.unet(widths=(1, 1), ndim=3, pool=f)

        def passthrough(a):  # a kernel that copies input channel 0 to every output channel
            if a.ndim != 5 or a.shape[0] != 3:
                return jnp.zeros_like(a)  # biases, the head
            k = np.zeros(a.shape, np.float32)
            k[1, 1, 1, 0, :] = 1.0
            return jnp.asarray(k)

        feats = m.apply(jax.tree_util.tree_map(passthrough, m.init(jax.random.key(0), 1)), jnp.asarray(v),
                        features=True)[1]
        pooled = block_reduce(v, (1, *f, 1), np.max)
        np.testing.assert_array_equal(np.asarray(feats["enc1"]), pooled)
        up = pooled.repeat(f[0], axis=1).repeat(2, axis=2).repeat(2, axis=3)
        np.testing.assert_array_equal(np.asarray(feats["dec0"]), up)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_3d_unet_on_one_slice_is_the_2d_unet_with_the_middle_kernels(norm):
    """A volume of depth 1 pooled by (1, 2, 2) sees only the middle z plane of each 3x3x3 kernel (zero
    padding above and below): given those planes as 3x3 kernels, the 2-D U-Net computes the same logits."""
    m3 = nets.unet(widths=(4, 8, 8), ndim=3, pool=(1, 2, 2), norm=norm)
    m2 = nets.unet(widths=(4, 8, 8), norm=norm)
    p3 = m3.init(jax.random.key(0), 2)
    p2 = jax.tree_util.tree_map(lambda a: a[a.shape[0] // 2] if a.ndim == 5 else a, p3)  # kernels' middle z plane
    x = jax.random.normal(jax.random.key(1), (3, 1, 16, 16, 2))
    np.testing.assert_allclose(m3.apply(p3, x)[:, 0], m2.apply(p2, x[:, 0]), rtol=1e-4, atol=1e-4)
    assert dict(m3.config)["ndim"] == 3 and dict(m3.config)["pool"] == (1, 2, 2) and "ndim" not in dict(m2.config)


def test_3d_nets_shapes_features_jit_and_errors():
    for model, shape in ((nets.unet(widths=(4, 8), ndim=3), (2, 8, 8, 8, 1)),
                         (nets.unet(widths=(4, 8, 8), ndim=3, pool=(1, 2, 2), out_channels=3), (1, 3, 8, 12, 1)),
                         (nets.fcn(widths=(4, 4), ndim=3), (1, 5, 6, 7, 1))):
        p = model.init(jax.random.key(0), 1)
        x = jax.random.normal(jax.random.key(1), shape)
        out, feats = model.apply(p, x, features=True)
        assert out.shape == shape[:-1] + (dict(model.config)["out_channels"],)
        assert all(f.ndim == 5 for f in feats.values())
        np.testing.assert_allclose(jax.jit(model.apply)(p, x), out, atol=1e-5)
    m = nets.unet(widths=(4, 8, 8), ndim=3)
    assert m is nets.unet(widths=(4, 8, 8), ndim=3, pool=(2, 2, 2)), "the default pooling is 2 along every axis"
    assert nets.unet(widths=(4, 8), ndim=3, pool=(np.int64(1), 2, 2)) is nets.unet(widths=(4, 8), ndim=3,
                                                                                 pool=(1, 2, 2))
    p = m.init(jax.random.key(0), 1)
    with pytest.raises(ValueError, match="D, H, W must be divisible by 4, 4, 4"):
        m.apply(p, jnp.zeros((1, 6, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"\(N, D, H, W, C\)"):
        m.apply(p, jnp.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        nets.unet().apply(nets.unet().init(jax.random.key(0), 1), jnp.zeros((1, 8, 8, 8, 1)))
    for bad in ({"ndim": 4}, {"ndim": True}, {"ndim": 3, "pool": (2, 2)}, {"ndim": 3, "pool": (0, 2, 2)},
                {"pool": (2.0, 2)}, {"ndim": 3, "pool": 2}):
        with pytest.raises(ValueError, match="ndim|pool"):
            nets.unet(**bad)
    with pytest.raises(ValueError, match="ndim"):
        nets.fcn(ndim=1)


def test_3d_dilated_conv_against_scipy():
    """A dilated 3-D conv (an FCN's second layer, dilation 2) is scipy's correlation with the kernel spread over a
    5 x 5 x 5 grid (zeros between its taps), zero-padded, on every axis including z (the 3-D convolution is
    computed plane by plane: this checks the z offsets)."""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 7, 6, 5, 2)).astype(np.float32)
    model = nets.fcn(widths=(2, 3), dilations=(1, 2), ndim=3)
    p = model.init(jax.random.key(2), 2)
    h = np.asarray(model.apply(p, jnp.asarray(x), features=True)[1]["layer0"], np.float64)
    w, b = np.asarray(p["layers"][1]["w"], np.float64), np.asarray(p["layers"][1]["b"], np.float64)
    spread = np.zeros((5, 5, 5) + w.shape[3:])
    spread[::2, ::2, ::2] = w
    want = np.stack([sum(ndimage.correlate(h[0, ..., i], spread[..., i, o], mode="constant") for i in range(2))
                     + b[o] for o in range(3)], axis=-1)
    got = np.asarray(model.apply(p, jnp.asarray(x), features=True)[1]["layer1"])[0]
    np.testing.assert_allclose(got, np.maximum(want, 0), atol=1e-4)
