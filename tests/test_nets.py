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
