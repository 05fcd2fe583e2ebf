"""Training speed: our JAX U-Net against the same architecture in PyTorch, in one run.

* per step: default U-Net (16-32-64), batch 8 x 128 x 128 x 1, BCE, Adam; ours
  is the jitted ``metastructure.train.step``; PyTorch CPU eager, channels_last
  (the same convs, pooling, nearest upsampling, skips and head). Median of
  ``--repeat`` steps after warm-up; prints jax / torch (< 1: we are faster).
  The process first calls ``metastructure.configure_cpu()`` (YNNPACK fusions
  off, glibc malloc keeping its pages), so both frameworks run under the same
  allocator; a child process measures the same pair without it (``--plain``).
* per step on volumes: the 3-D U-Net of the same widths (``nets.unet(ndim=3)``,
  3x3x3 convs, 2x2x2 pooling), batch ``--volume-batch`` x ``--volume`` D H W
  (default 2 x 16 x 64 x 64), against PyTorch's Conv3d network of the same
  layers (channels_last_3d); prints jax / torch.
* per convolution: forward, input-gradient and weight-gradient time of each of
  the ten convolutions in JAX, beside PyTorch's forward and forward+backward of
  the same layer: where the step's time goes.
* ``--alternatives``: the same network with its decoder rewritten (the concat
  convolution split in two; the upsample-then-convolve computed on the coarse
  grid), Winograd F(2x2, 3x3) against the direct convolution on the heaviest
  layers, and what the compiled step calls under XLA's oneDNN / XNNPACK flags.
* seeds: S = 4 runs of ``--steps`` steps through ``train.fit_many`` against one
  run times 4 (target: S seeds cost <= S x one seed), and a ``jax.vmap`` over 4
  replicas of the step for reference.

PyTorch is a bench-only dependency: ``pip install torch==2.13.0`` on a CPU machine.

    python bench/train.py --repeat 10 --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

import metastructure
from metastructure import losses, nets, train


def median_time(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def jax_step_time(batch, size, repeat, widths=(16, 32, 64), model=None):
    model = model or nets.unet(widths=widths)
    opt = train.make_optimizer("adam", learning_rate=1e-3)
    state = train.init(jax.random.key(0), model, 1, opt)
    x = jax.random.normal(jax.random.key(1), (batch, size, size, 1))
    y = (jax.random.uniform(jax.random.key(2), (batch, size, size)) > 0.7).astype(jnp.int32)
    f = jax.jit(lambda s, a, b: train.step(s, a, b, model=model, optimizer=opt, loss=losses.bce_with_logits))
    box = [state]

    def run():
        box[0], v = f(box[0], x, y)
        jax.block_until_ready(v)

    return median_time(run, repeat), (model, opt, f, x, y)


def jax_volume_step_time(batch, shape, repeat, widths):
    """The jitted training step of the 3-D U-Net on (batch, D, H, W, 1) volumes, BCE, Adam."""
    model = nets.unet(widths=widths, ndim=3)
    opt = train.make_optimizer("adam", learning_rate=1e-3)
    state = train.init(jax.random.key(0), model, 1, opt)
    x = jax.random.normal(jax.random.key(1), (batch, *shape, 1))
    y = (jax.random.uniform(jax.random.key(2), (batch, *shape)) > 0.7).astype(jnp.int32)
    f = jax.jit(lambda s, a, b: train.step(s, a, b, model=model, optimizer=opt, loss=losses.bce_with_logits))
    box = [state]

    def run():
        box[0], v = f(box[0], x, y)
        jax.block_until_ready(v)

    return median_time(run, repeat)


def torch_volume_step_time(batch, shape, repeat, threads, widths):
    """PyTorch's step of the same 3-D U-Net (Conv3d, max_pool3d, channels_last_3d): :func:`torch_unet_step_time`."""
    return torch_unet_step_time(batch, tuple(shape), repeat, threads, widths)


def jax_vmap_time(ctx, replicas, repeat):
    model, opt, _, x, y = ctx
    states = jax.vmap(lambda k: train.init(k, model, 1, opt))(jax.random.split(jax.random.key(3), replicas))
    g = jax.jit(jax.vmap(lambda s: train.step(s, x, y, model=model, optimizer=opt, loss=losses.bce_with_logits)))
    box = [states]

    def run():
        box[0], v = g(box[0])
        jax.block_until_ready(v)

    return median_time(run, max(2, repeat // 3), warmup=1)


def torch_conv_profile(batch, size, repeat, threads, widths):
    """PyTorch forward and forward+backward (input and weight gradients) of the same ten convolutions."""
    import torch

    torch.set_num_threads(threads)
    rows = []
    for hw, ci, co in _layers(size, widths):
        x = torch.randn(batch, ci, hw, hw).to(memory_format=torch.channels_last).requires_grad_(ci > 1)
        conv = torch.nn.Conv2d(ci, co, 3, padding=1).to(memory_format=torch.channels_last)
        g = torch.randn(batch, co, hw, hw).to(memory_format=torch.channels_last)

        def fwd():
            with torch.no_grad():
                conv(x)

        def fwd_bwd():
            x.grad = None
            conv.zero_grad(set_to_none=True)
            conv(x).backward(g)

        rows.append((median_time(fwd, repeat), median_time(fwd_bwd, repeat)))
    return rows


def _layers(size, widths):
    """(H = W, in, out) of each 3x3 convolution of the U-Net, in order."""
    layers, cin = [], 1
    for i, w in enumerate(widths):
        layers += [(size >> i, cin, w), (size >> i, w, w)]
        cin = w
    for i in reversed(range(len(widths) - 1)):
        layers += [(size >> i, cin + widths[i], widths[i]), (size >> i, widths[i], widths[i])]
        cin = widths[i]
    return layers


def torch_step_time(batch, size, repeat, threads, widths=(16, 32, 64)):
    """PyTorch's step of the 2-D U-Net on (batch, 1, size, size) and its version."""
    import torch

    return torch_unet_step_time(batch, (size, size), repeat, threads, widths), torch.__version__


def torch_unet_step_time(batch, shape, repeat, threads, widths):
    """The same U-Net in PyTorch eager on (batch, 1, *shape), 2-D or 3-D by ``len(shape)``: pairs of 3x3(x3)
    convolutions with ReLU, max pooling 2, nearest upsampling, skip concatenation, a 1x1 head; BCE with logits,
    Adam; channels_last (channels_last_3d for volumes)."""
    import torch
    import torch.nn as tnn

    torch.set_num_threads(threads)
    nd = len(shape)
    conv = tnn.Conv2d if nd == 2 else tnn.Conv3d
    pool = tnn.functional.max_pool2d if nd == 2 else tnn.functional.max_pool3d
    layout = torch.channels_last if nd == 2 else torch.channels_last_3d

    def pair(cin, cout):
        return tnn.Sequential(conv(cin, cout, 3, padding=1), tnn.ReLU(), conv(cout, cout, 3, padding=1), tnn.ReLU())

    class UNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.enc, cin = tnn.ModuleList(), 1
            for w in widths:
                self.enc.append(pair(cin, w))
                cin = w
            self.dec = tnn.ModuleList()
            for w in reversed(widths[:-1]):
                self.dec.append(pair(cin + w, w))
                cin = w
            self.head = conv(cin, 1, 1)

        def forward(self, x):
            skips = []
            for i, blk in enumerate(self.enc):
                if i:
                    x = pool(x, 2)
                x = blk(x)
                skips.append(x)
            for i, blk in enumerate(self.dec):
                x = torch.cat([tnn.functional.interpolate(x, scale_factor=2, mode="nearest"), skips[-2 - i]], 1)
                x = blk(x)
            return self.head(x)

    torch.manual_seed(0)
    model = UNet().to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, *shape).to(memory_format=layout)
    y = (torch.rand(batch, 1, *shape) > 0.7).float()
    lossf = tnn.BCEWithLogitsLoss()

    def run():
        opt.zero_grad(set_to_none=True)
        lossf(model(x), y).backward()
        opt.step()

    return median_time(run, repeat)


def conv_profile(batch, size, repeat, widths):
    """Forward, input-gradient and weight-gradient time of each conv of the default U-Net."""
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)

    layers = _layers(size, widths)
    fwd = jax.jit(conv)
    dx = jax.jit(lambda x, w: jax.grad(lambda a: conv(a, w).sum())(x))
    dw = jax.jit(lambda x, w: jax.grad(lambda b: conv(x, b).sum())(w))
    rows = []
    for hw, ci, co in layers:
        x = jax.random.normal(jax.random.key(0), (batch, hw, hw, ci))
        w = jax.random.normal(jax.random.key(1), (3, 3, ci, co))
        t = [median_time(lambda f=f: jax.block_until_ready(f(x, w)), repeat) for f in (fwd, dx, dw)]
        rows.append((hw, ci, co, *t, 2 * batch * hw * hw * 9 * ci * co))
    return rows


def seeds_time(steps, seeds):
    tr_x = jax.random.normal(jax.random.key(5), (16, 64, 64, 1))
    tr_y = (jax.random.uniform(jax.random.key(6), (16, 64, 64)) > 0.7).astype(jnp.int32)
    kw = dict(steps=steps, batch_size=8, progress=False)
    train.fit(jax.random.key(0), tr_x, tr_y, **kw)  # compile once
    t0 = time.perf_counter()
    train.fit(jax.random.key(1), tr_x, tr_y, **kw)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    train.fit_many(jax.random.split(jax.random.key(2), seeds), tr_x, tr_y, **kw)
    many = time.perf_counter() - t0
    return one, many


# ------------------------------------------------------------------ alternatives (--alternatives)
def _conv(x, w, padding="SAME"):
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _coarse_up_conv(x, w):
    """conv3x3(SAME)(nearest 2x upsampling of x), computed on x's own grid.

    Output row 2i + a reads fine rows 2i + a - 1 .. 2i + a + 1, i.e. coarse rows
    i - 1, i (a = 0: taps w0 | w1 + w2) or i, i + 1 (a = 1: taps w0 + w1 | w2);
    likewise for columns. One 2x2 convolution with 4 x out channels (one block
    per phase (a, b)) on the padded coarse input, then each phase's block is
    read at its offset and the phases are interleaved.
    """
    def phases(v):  # (3, ...) -> (2 phases, 2 taps, ...)
        return jnp.stack([jnp.stack([v[0], v[1] + v[2]]), jnp.stack([v[0] + v[1], v[2]])])

    n, h, wd, c = x.shape
    d = w.shape[-1]
    k = phases(jnp.moveaxis(phases(w), 2, 0))  # rows, then columns: (b, tx, a, ty, C, D)
    k = jnp.transpose(k, (3, 1, 4, 2, 0, 5)).reshape(2, 2, c, 4 * d)  # (ty, tx, C, (a, b, D))
    y = _conv(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), k, "VALID").reshape(n, h + 1, wd + 1, 2, 2, d)
    out = jnp.stack([jnp.stack([y[:, a:a + h, b:b + wd, a, b] for b in (0, 1)], axis=3) for a in (0, 1)], axis=2)
    return out.reshape(n, 2 * h, 2 * wd, d)


def _winograd_conv(x, w):
    """conv3x3(SAME) by Winograd F(2x2, 3x3): 4x4 input tiles at stride 2, 16 products per 2x2 outputs
    (36 direct), as 16 batched GEMMs over channels; transforms as slices and sums that XLA fuses."""
    def bt(d):  # B^T d along the first axis (4 -> 4)
        return jnp.stack([d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]])

    def gk(k):  # G k along the first axis (3 -> 4)
        return jnp.stack([k[0], (k[0] + k[1] + k[2]) / 2, (k[0] - k[1] + k[2]) / 2, k[2]])

    def at(m):  # A^T m along the first axis (4 -> 2)
        return jnp.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]])

    n, h, wd, c = x.shape
    d = w.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = bt(jnp.stack([xp[:, r:r + h:2] for r in range(4)]))  # (4 rows, n, h/2, W + 2, c)
    tiles = bt(jnp.stack([rows[:, :, :, q:q + wd:2] for q in range(4)]))  # (4 cols, 4 rows, n, h/2, w/2, c)
    u = gk(jnp.moveaxis(gk(w), 1, 0)).reshape(16, c, d)  # (4 cols, 4 rows, c, d)
    m = jnp.einsum("ktc,kcd->ktd", tiles.reshape(16, -1, c), u).reshape(4, 4, n, h // 2, wd // 2, d)
    y = at(jnp.moveaxis(at(m), 1, 0))  # (2 rows, 2 cols, n, h/2, w/2, d)
    return jnp.transpose(y, (2, 3, 0, 4, 1, 5)).reshape(n, h, wd, d)


def rewritten_unet(widths, decoder):
    """The same function and parameters as ``nets.unet(widths=widths)``, its decoder's first convolutions rewritten:
    "split": conv(concat(up(h), skip)) as conv(up(h)) + conv(skip); "coarse": also conv(up(h)) on the coarse grid."""
    base = nets.unet(widths=widths)

    def apply(params, x):
        skips, h = [], x
        for i, (c1, c2) in enumerate(params["enc"]):
            if i:
                n, hh, ww, c = h.shape
                h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
            h = jax.nn.relu(_conv(jax.nn.relu(_conv(h, c1["w"]) + c1["b"]), c2["w"]) + c2["b"])
            skips.append(h)
        for i, (c1, c2) in enumerate(params["dec"]):
            cu = h.shape[-1]
            wu, ws = c1["w"][:, :, :cu], c1["w"][:, :, cu:]
            up = (_coarse_up_conv(h, wu) if decoder == "coarse"
                  else _conv(jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2), wu))
            z = up + _conv(skips[-2 - i], ws) + c1["b"]
            h = jax.nn.relu(_conv(jax.nn.relu(z), c2["w"]) + c2["b"])
        return _conv(h, params["head"]["w"]) + params["head"]["b"]

    return nets.Model(base.init, apply, name=f"unet_{decoder}", config=(("decoder", decoder), ("widths", widths)))


ROUTES = {  # appended to the YNNPACK-off flag; the census counts what the compiled step calls
    "YNNPACK on (jax default)": None,
    "YNNPACK off": "",
    "+ use_onednn": "--xla_cpu_use_onednn=true",
    "+ onednn_custom_call": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "+ onednn_fusion_type=individual_convolution": "--xla_cpu_experimental_onednn_fusion_type=individual_convolution",
    "+ xnn_fusion_type=individual_convolution": "--xla_cpu_experimental_xnn_fusion_type=individual_convolution",
}


def hlo_census(args):
    """What the compiled training step calls: plain convolutions and library fusions/custom calls."""
    model = nets.unet(widths=args.widths)
    opt = train.make_optimizer("adam", learning_rate=1e-3)
    state = train.init(jax.random.key(0), model, 1, opt)
    x = jnp.zeros((args.batch, args.size, args.size, 1))
    y = jnp.zeros((args.batch, args.size, args.size), jnp.int32)
    f = jax.jit(lambda s, a, b: train.step(s, a, b, model=model, optimizer=opt, loss=losses.bce_with_logits))
    text = f.lower(state, x, y).compile().as_text()
    return {"convolution": text.count(" convolution("), "ynn": text.count("__ynn_fusion"),
            "xnn": text.count("__xnn_fusion"), "onednn": text.count("__onednn")}


def alternatives(args):
    print("rewrites of the same network (same parameters), this process, interleaved over 3 rounds:")
    base = nets.unet(widths=args.widths)
    params = base.init(jax.random.key(0), 1)
    probe = jax.random.normal(jax.random.key(4), (2, args.size, args.size, 1))
    ref = base.apply(params, probe)
    models = {"plain": base, **{d: rewritten_unet(args.widths, d) for d in ("split", "coarse")}}
    times = {name: [] for name in models}
    for _ in range(3):
        for name, m in models.items():
            times[name].append(jax_step_time(args.batch, args.size, args.repeat, model=m)[0])
    t_plain = statistics.median(times["plain"])
    for name, m in models.items():
        t = statistics.median(times[name])
        diff = float(jnp.max(jnp.abs(m.apply(params, probe) - ref)))
        print(f"  {name:7s} decoder: {t * 1e3:7.1f} ms per step (rounds "
              f"{', '.join(f'{v * 1e3:.1f}' for v in times[name])}) = {t / t_plain:.2f} x plain; "
              f"max |logit difference| {diff:.1e}")
    print("Winograd F(2x2, 3x3) against the direct convolution, the three heaviest layers (forward; forward + "
          "input and weight gradients):")
    big = [layer for layer in _layers(args.size, args.widths) if layer[1] > 1]
    for hw, ci, co in sorted(big, key=lambda r: -r[0] * r[0] * r[1] * r[2])[:3]:
        x = jax.random.normal(jax.random.key(5), (args.batch, hw, hw, ci))
        w = jax.random.normal(jax.random.key(6), (3, 3, ci, co))
        g = jax.random.normal(jax.random.key(7), (args.batch, hw, hw, co))
        diff = float(jnp.max(jnp.abs(_winograd_conv(x, w) - _conv(x, w))) / jnp.max(jnp.abs(_conv(x, w))))
        line = []
        for f in (_conv, _winograd_conv):
            fwd = jax.jit(f)
            both = jax.jit(jax.grad(lambda a, b, f=f: jnp.vdot(f(a, b), g), argnums=(0, 1)))
            line.append([median_time(lambda h=h: jax.block_until_ready(h(x, w)), args.repeat) * 1e3
                         for h in (fwd, both)])
        print(f"  {hw:4d}^2 {ci:3d}->{co:3d}: direct {line[0][0]:5.1f} / {line[0][1]:5.1f} ms, Winograd "
              f"{line[1][0]:5.1f} / {line[1][1]:5.1f} ms (relative difference {diff:.0e})")
    print("convolution routes (each a fresh process with these XLA_FLAGS):")
    for name, extra in ROUTES.items():
        env = dict(os.environ)
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "ynn_fusion_type" not in f]
        if extra is not None:
            flags += [metastructure.runtime.YNN_FLAG, *extra.split()]
        env["XLA_FLAGS"] = " ".join(flags)
        cmd = [sys.executable, __file__, "--hlo-census", "--batch", str(args.batch), "--size", str(args.size),
               "--widths", *map(str, args.widths)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        print(f"  {name:45s} {out.stdout.strip().splitlines()[-1]}")


def step_pair(args):
    """(JAX step, PyTorch step or None, torch version) in this process."""
    t_jax, ctx = jax_step_time(args.batch, args.size, args.repeat, args.widths)
    try:
        t_torch, tv = torch_step_time(args.batch, args.size, args.repeat, args.threads, args.widths)
    except ImportError:
        t_torch, tv = None, None
    return t_jax, t_torch, tv, ctx


def plain_child(args):
    """The same step pair in a fresh process without configure_cpu (the library's default)."""
    cmd = [sys.executable, __file__, "--plain", "--step-only", "--batch", str(args.batch), "--size", str(args.size),
           "--repeat", str(args.repeat), "--threads", str(args.threads), "--widths", *map(str, args.widths)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def volume_pair(args):
    """Print the 3-D step of both frameworks and their ratio (this process)."""
    shape = tuple(args.volume)
    t_jax = jax_volume_step_time(args.volume_batch, shape, args.repeat, args.widths)
    what = f"3-D U-Net {'-'.join(map(str, args.widths))}, batch {args.volume_batch} x {'x'.join(map(str, shape))}"
    try:
        t_torch = torch_volume_step_time(args.volume_batch, shape, args.repeat, args.threads, args.widths)
    except ImportError:
        print(f"{what}: JAX step {t_jax * 1e3:.1f} ms; PyTorch not installed, no comparison")
        return
    print(f"{what}: JAX step {t_jax * 1e3:8.1f} ms, PyTorch Conv3d channels_last_3d {t_torch * 1e3:8.1f} ms, "
          f"ratio jax / torch {t_jax / t_torch:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30, help="steps per run in the seeds comparison")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the machine has 2 cores)")
    ap.add_argument("--no-convs", action="store_true", help="skip the per-convolution profile")
    ap.add_argument("--plain", action="store_true", help="do not call metastructure.configure_cpu()")
    ap.add_argument("--step-only", action="store_true", help="print the step pair as JSON and stop")
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64], help="U-Net widths")
    ap.add_argument("--volume", type=int, nargs=3, default=[16, 64, 64], metavar=("D", "H", "W"),
                    help="the 3-D step's volume (default 16 64 64)")
    ap.add_argument("--volume-batch", type=int, default=2, help="the 3-D step's batch (default 2)")
    ap.add_argument("--volume-only", action="store_true", help="time the 3-D step pair only")
    ap.add_argument("--alternatives", action="store_true",
                    help="also time rewrites of the same network, Winograd convolutions, and the convolution "
                         "routes XLA's flags offer")
    ap.add_argument("--hlo-census", action="store_true", help=argparse.SUPPRESS)  # child of --alternatives
    args = ap.parse_args()
    args.widths = tuple(args.widths)
    if args.hlo_census:
        print(json.dumps(hlo_census(args)))
        return

    # the unconfigured pair first, in a child process, while this one is still idle (no JAX or torch threads)
    plain = None if args.plain or args.step_only else plain_child(args)
    config = {"xla": False, "allocator": False} if args.plain else metastructure.configure_cpu()
    if args.step_only:
        t_jax, t_torch, _, _ = step_pair(args)
        print(json.dumps({"jax": t_jax, "torch": t_torch, "config": config}))
        return

    if args.volume_only:
        volume_pair(args)
        return
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; U-Net {'-'.join(map(str, args.widths))}, "
          f"batch {args.batch} x "
          f"{args.size}^2, BCE, Adam; configure_cpu: {config}")
    t_jax, t_torch, tv, ctx = step_pair(args)
    print(f"JAX step            {t_jax * 1e3:8.1f} ms")
    if t_torch is None:
        print("PyTorch not installed (pip install torch==2.13.0): skipping the comparison")
    else:
        print(f"PyTorch {tv} eager channels_last step {t_torch * 1e3:8.1f} ms (same process)")
        print(f"ratio jax / torch   {t_jax / t_torch:8.2f}   (target <= 1.0)")
    volume_pair(args)
    if plain is not None:
        p = plain
        line = f"without configure_cpu (own process): JAX {p['jax'] * 1e3:.1f} ms"
        if p["torch"] is not None:
            line += f", PyTorch {p['torch'] * 1e3:.1f} ms, ratio {p['jax'] / p['torch']:.2f}"
        print(line + f"; configured JAX step is {p['jax'] / t_jax:.2f}x faster")
    if not args.no_convs:
        rows = conv_profile(args.batch, args.size, args.repeat, args.widths)
        trows = (None if t_torch is None else
                 torch_conv_profile(args.batch, args.size, args.repeat, args.threads, args.widths))
        print("per conv (HxW, cin, cout): JAX forward / input grad / weight grad ms, forward GFLOP/s"
              + ("; PyTorch forward, forward+backward ms" if trows else ""))
        for i, (hw, ci, co, f, dx, dw, flops) in enumerate(rows):
            line = f"  {hw:4d}^2 {ci:3d}->{co:3d}: {f * 1e3:6.1f} / {dx * 1e3:6.1f} / {dw * 1e3:6.1f}   " \
                   f"{flops / f / 1e9:6.0f}"
            if trows:
                line += f"   | {trows[i][0] * 1e3:6.1f}, {trows[i][1] * 1e3:6.1f}"
            print(line)
        # the step never needs the input gradient of the first layer (the images)
        tot = [sum(r[3] for r in rows), sum(r[4] for r in rows[1:]), sum(r[5] for r in rows)]
        flops = sum(r[6] for r in rows)
        print(f"  JAX total {tot[0] * 1e3:.1f} / {tot[1] * 1e3:.1f} / {tot[2] * 1e3:.1f} = {sum(tot) * 1e3:.1f} ms "
              f"of a {t_jax * 1e3:.1f} ms step; forward {flops / tot[0] / 1e9:.0f}, weight grad "
              f"{flops / tot[2] / 1e9:.0f} GFLOP/s")
        if trows:
            tf, tb = sum(r[0] for r in trows), sum(r[1] for r in trows)
            print(f"  PyTorch total forward {tf * 1e3:.1f} ({flops / tf / 1e9:.0f} GFLOP/s), forward+backward "
                  f"{tb * 1e3:.1f} ms of a {t_torch * 1e3:.1f} ms step; JAX / PyTorch convolutions "
                  f"{sum(tot) / tb:.2f}")
    t_vmap = jax_vmap_time(ctx, args.seeds, args.repeat)
    print(f"jax.vmap over {args.seeds} replicas: {t_vmap * 1e3:8.1f} ms per step = "
          f"{t_vmap / (args.seeds * t_jax):.2f} x {args.seeds} sequential steps")
    one, many = seeds_time(args.steps, args.seeds)
    print(f"fit x1: {one:.2f} s; fit_many x{args.seeds}: {many:.2f} s = {many / one:.2f} x one run "
          f"(target <= {args.seeds})")
    if args.alternatives:
        alternatives(args)


if __name__ == "__main__":
    main()
