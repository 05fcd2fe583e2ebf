"""Training speed: our JAX U-Net against the same architecture in PyTorch, in one run.

* per step: default U-Net (16-32-64), batch 8 x 128 x 128 x 1, BCE, Adam; ours
  is the jitted ``metastructure.train.step``; PyTorch CPU eager, channels_last
  (the same convs, pooling, nearest upsampling, skips and head). Median of
  ``--repeat`` steps after warm-up; prints jax / torch (< 1: we are faster).
  The process first calls ``metastructure.configure_cpu()`` (YNNPACK fusions
  off, glibc malloc keeping its pages), so both frameworks run under the same
  allocator; a child process measures the same pair without it (``--plain``).
* per convolution: forward, input-gradient and weight-gradient time of each of
  the ten convolutions in JAX, beside PyTorch's forward and forward+backward of
  the same layer: where the step's time goes.
* seeds: S = 4 runs of ``--steps`` steps through ``train.fit_many`` against one
  run times 4 (target: S seeds cost <= S x one seed), and a ``jax.vmap`` over 4
  replicas of the step for reference.

PyTorch is a bench-only dependency: ``pip install torch==2.13.0`` on a CPU machine.

    python bench/train.py --repeat 10 --steps 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

import metastructure
from metastructure import nets, train


def median_time(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def jax_step_time(batch, size, repeat):
    model = nets.unet()
    opt = train.make_optimizer("adam", 1e-3)
    state = train.init(jax.random.key(0), model, 1, opt)
    x = jax.random.normal(jax.random.key(1), (batch, size, size, 1))
    y = (jax.random.uniform(jax.random.key(2), (batch, size, size)) > 0.7).astype(jnp.int32)
    f = jax.jit(lambda s, a, b: train.step(s, a, b, model=model, optimizer=opt, loss=train.bce_with_logits))
    box = [state]

    def run():
        box[0], v = f(box[0], x, y)
        jax.block_until_ready(v)

    return median_time(run, repeat), (model, opt, f, x, y)


def jax_vmap_time(ctx, replicas, repeat):
    model, opt, _, x, y = ctx
    states = jax.vmap(lambda k: train.init(k, model, 1, opt))(jax.random.split(jax.random.key(3), replicas))
    g = jax.jit(jax.vmap(lambda s: train.step(s, x, y, model=model, optimizer=opt, loss=train.bce_with_logits)))
    box = [states]

    def run():
        box[0], v = g(box[0])
        jax.block_until_ready(v)

    return median_time(run, max(2, repeat // 3), warmup=1)


def torch_conv_profile(batch, size, repeat, threads):
    """PyTorch forward and forward+backward (input and weight gradients) of the same ten convolutions."""
    import torch

    torch.set_num_threads(threads)
    rows = []
    for hw, ci, co in _layers(size):
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


def _layers(size):
    s1, s2, s4 = size, size // 2, size // 4
    return [(s1, 1, 16), (s1, 16, 16), (s2, 16, 32), (s2, 32, 32), (s4, 32, 64), (s4, 64, 64),
            (s2, 96, 32), (s2, 32, 32), (s1, 48, 16), (s1, 16, 16)]


def torch_step_time(batch, size, repeat, threads):
    import torch
    import torch.nn as tnn

    torch.set_num_threads(threads)

    def pair(cin, cout):
        return tnn.Sequential(tnn.Conv2d(cin, cout, 3, padding=1), tnn.ReLU(), tnn.Conv2d(cout, cout, 3, padding=1),
                              tnn.ReLU())

    class UNet(tnn.Module):
        def __init__(self, widths=(16, 32, 64)):
            super().__init__()
            self.enc = tnn.ModuleList()
            cin = 1
            for w in widths:
                self.enc.append(pair(cin, w))
                cin = w
            self.dec = tnn.ModuleList()
            for w in reversed(widths[:-1]):
                self.dec.append(pair(cin + w, w))
                cin = w
            self.head = tnn.Conv2d(cin, 1, 1)

        def forward(self, x):
            skips = []
            for i, blk in enumerate(self.enc):
                if i:
                    x = tnn.functional.max_pool2d(x, 2)
                x = blk(x)
                skips.append(x)
            for i, blk in enumerate(self.dec):
                x = torch.cat([tnn.functional.interpolate(x, scale_factor=2, mode="nearest"), skips[-2 - i]], 1)
                x = blk(x)
            return self.head(x)

    torch.manual_seed(0)
    model = UNet().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, size, size).to(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, size, size) > 0.7).float()
    lossf = tnn.BCEWithLogitsLoss()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()

    return median_time(run, repeat), torch.__version__


def conv_profile(batch, size, repeat):
    """Forward, input-gradient and weight-gradient time of each conv of the default U-Net."""
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)

    layers = _layers(size)
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


def step_pair(args):
    """(JAX step, PyTorch step or None, torch version) in this process."""
    t_jax, ctx = jax_step_time(args.batch, args.size, args.repeat)
    try:
        t_torch, tv = torch_step_time(args.batch, args.size, args.repeat, args.threads)
    except ImportError:
        t_torch, tv = None, None
    return t_jax, t_torch, tv, ctx


def plain_child(args):
    """The same step pair in a fresh process without configure_cpu (the library's default)."""
    cmd = [sys.executable, __file__, "--plain", "--step-only", "--batch", str(args.batch), "--size", str(args.size),
           "--repeat", str(args.repeat), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    args = ap.parse_args()

    # the unconfigured pair first, in a child process, while this one is still idle (no JAX or torch threads)
    plain = None if args.plain or args.step_only else plain_child(args)
    config = {"xla": False, "allocator": False} if args.plain else metastructure.configure_cpu()
    if args.step_only:
        t_jax, t_torch, _, _ = step_pair(args)
        print(json.dumps({"jax": t_jax, "torch": t_torch, "config": config}))
        return

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; U-Net 16-32-64, batch {args.batch} x "
          f"{args.size}^2, BCE, Adam; configure_cpu: {config}")
    t_jax, t_torch, tv, ctx = step_pair(args)
    print(f"JAX step            {t_jax * 1e3:8.1f} ms")
    if t_torch is None:
        print("PyTorch not installed (pip install torch==2.13.0): skipping the comparison")
    else:
        print(f"PyTorch {tv} eager channels_last step {t_torch * 1e3:8.1f} ms (same process)")
        print(f"ratio jax / torch   {t_jax / t_torch:8.2f}   (target <= 1.0)")
    if plain is not None:
        p = plain
        line = f"without configure_cpu (own process): JAX {p['jax'] * 1e3:.1f} ms"
        if p["torch"] is not None:
            line += f", PyTorch {p['torch'] * 1e3:.1f} ms, ratio {p['jax'] / p['torch']:.2f}"
        print(line + f"; configured JAX step is {p['jax'] / t_jax:.2f}x faster")
    if not args.no_convs:
        rows = conv_profile(args.batch, args.size, args.repeat)
        trows = None if t_torch is None else torch_conv_profile(args.batch, args.size, args.repeat, args.threads)
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


if __name__ == "__main__":
    main()
