"""What a training step of the authors' iGTT configuration costs, and the two hooks it adds, in one run.

The authors' loop (``metastructure.unsupervised.igtt(preset="paper")``) adds two things to a plain training step:
the in-step selection of pseudo-labels (30 thresholds of each output, scored by DMI) and EMS drawn at load
(skeleton, shift, an exact 10% sample). This bench times, on a batch of 8 x 128^2 and the igtt experiment's
U-Net 8-16-32 with BatchNorm:

* ``select``: ``select_pseudo_labels`` (DMI, one threshold index per batch) against scoring every candidate
  mask with ``losses.dmi_loss_from_probs`` (K masks materialised, a 2 x 2 joint and its determinant each: the
  definition, and what the selection computed before it reduced a count and a centred sum per threshold);
  both jitted, the same masks checked;
* ``sample``: ``noise.sample`` (exact count: one sort of random keys) against ranking the same keys by a
  second argsort (the inverse permutation, as it was computed before); the same masks checked;
* ``step``: the authors' step with both hooks, with the selection only, and with neither (the same loss,
  optimiser, BatchNorm), so the hooks' share of the step is printed.

Medians of ``--repeat`` calls after one warm-up (compilation excluded).

    python bench/igtt.py [--repeat 20] [--size 128] [--batch 8]
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
from density import timeit  # bench/density.py's: the median of ``repeat`` calls after a warm-up, in ms

from metastructure import data, losses, nets, noise, train
from metastructure import unsupervised as uns


def select_by_definition(p, num_thresholds=30):
    """One DMI-chosen threshold index for the batch, every candidate mask scored by dmi_loss_from_probs."""
    frac = jnp.arange(1, num_thresholds + 1, dtype=jnp.float32) / (num_thresholds + 1)
    lo, hi = jnp.min(p, axis=(1, 2)), jnp.max(p, axis=(1, 2))
    ts = lo[:, None] + frac[None] * (hi - lo)[:, None]
    cands = p[:, None] > ts[:, :, None, None]  # (N, K, H, W)
    scores = jax.vmap(lambda img, cs: jax.vmap(lambda c: losses.dmi_loss_from_probs(img, c))(cs))(p, cands)
    k = jnp.argmin(jnp.mean(scores, axis=0))
    return jnp.where((hi > lo)[:, None, None], cands[:, k], False)


def sample_by_ranks(key, mask, ratio):
    """noise.sample's exact draw with the ranks taken by a second argsort of the order."""
    flat = mask.reshape(mask.shape[0], -1)
    k = jnp.ceil(ratio * jnp.sum(flat, axis=-1)).astype(jnp.int32)
    bits = jax.random.bits(key, flat.shape, dtype=jnp.uint32) >> 1
    keys = jnp.where(flat, bits, bits | jnp.uint32(1 << 31))
    rank = jnp.argsort(jnp.argsort(keys, axis=-1, stable=True), axis=-1, stable=True)
    return (flat & (rank < k[:, None])).reshape(mask.shape)


def authors_hooks(*, ems_at_load: bool, in_step: bool):
    """The authors' step hooks of ``train.make_step``, from the package's public pieces as ``igtt(preset="paper")``
    uses them: DMI + soft IoU (k = 2) per image, then their mean; EMS of the stored selections drawn at load
    (size rule, skeleton, radius 1, 10%); one DMI-chosen threshold index per batch from the output before
    the step. Without ``ems_at_load`` the stored masks are the labels; without ``in_step`` no selection."""

    def loss(logits, y):
        per_image = jax.vmap(lambda z, t: losses.dmi_loss(z, t) + losses.soft_iou_loss(z, t, power=2))
        return jnp.mean(per_image(logits[..., 0], y))

    def targets(key, y, black):
        if ems_at_load:
            y = uns.ems(key, y, radius=1, ratio=0.1, source="skeleton")
        return jnp.where(black, False, y).astype(jnp.float32)

    def select(logits):
        return uns.select_pseudo_labels(jax.nn.sigmoid(logits[..., 0]), shared=True)

    return loss, targets, select if in_step else None


def step_ms(images, masks, repeat, *, batch, ems_at_load, in_step):
    cfg = uns.PRESETS["paper"]
    model = nets.unet(widths=(8, 16, 32), norm=cfg.norm, init=cfg.init)
    opt = train.make_optimizer("sgd", learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                               momentum=cfg.momentum)
    loss, targets, select = authors_hooks(ems_at_load=ems_at_load, in_step=in_step)
    run = train.make_step(model, opt, loss=loss, targets=targets, augment=False, select=select)
    state = train.init(jax.random.key(0), model, images.shape[-1], opt)
    store = masks if select is not None else None
    idx = jnp.arange(batch)
    black = jnp.asarray(False)
    return timeit(lambda: run(state, jax.random.key(1), images, masks, black, idx, store)[1], repeat)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; batch {a.batch} x {a.size}^2, median of {a.repeat}")
    d = data.er_uneven(jax.random.key(0), a.batch, size=a.size)
    images, masks = jnp.asarray(d.images), jnp.asarray(d.masks).astype(bool)

    # the selection, on a network-like output: a sigmoid of a blurred noisy copy of the image
    z = np.asarray(d.images[..., 0])
    p = jnp.asarray(1 / (1 + np.exp(-2 * z)), jnp.float32)
    ours = jax.jit(lambda q: uns.select_pseudo_labels(q, shared=True))
    ref = jax.jit(select_by_definition)
    same = bool(np.array_equal(np.asarray(ours(p)), np.asarray(ref(p))))
    t_ours, t_ref = timeit(lambda: ours(p), a.repeat), timeit(lambda: ref(p), a.repeat)
    print(f"select  ours {t_ours:8.2f} ms   by definition {t_ref:8.2f} ms   definition / ours {t_ref / t_ours:6.1f}"
          f"   same masks: {same}")

    key = jax.random.key(3)
    ours = jax.jit(lambda k, m: noise.sample(k, m, 0.1))
    ref = jax.jit(lambda k, m: sample_by_ranks(k, m, 0.1))
    same = bool(np.array_equal(np.asarray(ours(key, masks)), np.asarray(ref(key, masks))))
    t_ours, t_ref = timeit(lambda: ours(key, masks), a.repeat), timeit(lambda: ref(key, masks), a.repeat)
    print(f"sample  ours {t_ours:8.2f} ms   two argsorts  {t_ref:8.2f} ms   two sorts / ours  {t_ref / t_ours:6.1f}"
          f"   same masks: {same}")

    full = step_ms(images, masks, a.repeat, batch=a.batch, ems_at_load=True, in_step=True)
    sel_only = step_ms(images, masks, a.repeat, batch=a.batch, ems_at_load=False, in_step=True)
    plain = step_ms(images, masks, a.repeat, batch=a.batch, ems_at_load=False, in_step=False)
    print(f"step    authors' {full:8.1f} ms   selection only {sel_only:8.1f} ms   neither {plain:8.1f} ms   "
          f"authors' / neither {full / plain:5.2f}  (hooks: {math.fsum([full, -plain]) / full:.0%} of the step)")


if __name__ == "__main__":
    main()
