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
