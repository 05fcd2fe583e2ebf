"""Fraction fields against scipy.ndimage and against a plain copy, in one run.

For each size and bandwidth it times, on a random binary mask:

* ``ours``: ``metastructure.density.fraction_field`` (the public call, jitted
  inside, bool input so validation is free), median of ``--repeat`` runs after
  one warm-up (compilation excluded);
* ``scipy``: the same field with ``scipy.ndimage`` (``gaussian_filter`` /
  ``uniform_filter`` with zero padding, divided by a precomputed border
  denominator: the cheapest way a user gets the same numbers);
* ``copy``: ``x * 1.0001`` on the same float32 array, jitted (the floor).

and prints the ratios the issue asks for: scipy / ours (> 1: we are faster),
ours(64) / ours(4) (flatness), ours / copy. Also checks that both give the same
field (max abs difference).

Volumes (``--volumes``, default 64^3 and 32 x 256 x 256): the gaussian 3-D field
(``fraction_field(ndim=3)``) against ``scipy.ndimage.gaussian_filter`` over the
three axes with the same zero padding and border denominator, scipy / ours.

    python bench/density.py                 # 512 and 2048, bandwidths 1 4 16 64
    python bench/density.py --sizes 512 --repeat 3
    python bench/density.py --sizes --volumes 64,64,64 32,256,256
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
import scipy.ndimage as ndi

import metastructure
from metastructure import density


def timeit(fn, repeat):
    jax.block_until_ready(fn())
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def scipy_field(m, bw, kernel, den):
    x = m.astype(np.float32)
    if kernel == "gaussian":
        num = ndi.gaussian_filter(x, bw, mode="constant", truncate=4.0)
    else:
        num = ndi.uniform_filter(x, size=2 * int(bw) + 1, mode="constant")
    return num / den


def primitives(n, repeat):
    """The exact filtering primitives XLA offers on this backend, on one n x n float32 array."""
    x = jnp.asarray(np.random.default_rng(1).random((n, n)) < 0.3, jnp.float32)
    h = 16

    def box_cumsum(a):
        for ax in (0, 1):
            c = jnp.cumsum(a, axis=ax)
            pad = [(0, 0), (0, 0)]
            pad[ax] = (h + 1, h)
            cp = jnp.pad(c, pad, mode="edge").at[(slice(None),) * ax + (slice(0, h + 1),)].set(0)
            a = jax.lax.slice_in_dim(cp, 2 * h + 1, 2 * h + 1 + n, axis=ax) - jax.lax.slice_in_dim(cp, 0, n, axis=ax)
        return a

    def box_reduce_window(a):
        return jax.lax.reduce_window(a, 0.0, jax.lax.add, (2 * h + 1, 2 * h + 1), (1, 1), "SAME")

    m = scipy.fft.next_fast_len(n + h, real=True)  # the padding the fields use

    def fft_axis(a):
        return jnp.fft.irfft(jnp.fft.rfft(a, n=m, axis=0) * 0.5, n=m, axis=0)[:n]

    a_dense = jnp.asarray(np.eye(n, dtype=np.float32))
    cases = {
        "copy": lambda a: a * 1.0001,
        "box h=16 by cumsum (both axes)": box_cumsum,
        "box h=16 by reduce_window": box_reduce_window,
        "rfft + irfft, one axis": fft_axis,
        "dense n x n matmul, one axis": lambda a: a_dense @ a,
    }
    print(f"primitives on {n}^2 (ms):")
    for name, f in cases.items():
        g = jax.jit(f)
        print(f"  {name:34s} {timeit(lambda: g(x), repeat):8.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[512, 2048])
    ap.add_argument("--volumes", nargs="*", default=["64,64,64", "32,256,256"], metavar="D,H,W",
                    help="volumes for the 3-D gaussian field (none: skip)")
    ap.add_argument("--bandwidths", type=float, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--kernels", nargs="+", default=["gaussian", "box"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--primitives", action="store_true", help="also time the filtering primitives XLA offers")
    ap.add_argument("--configure", action="store_true",
                    help="call metastructure.configure_cpu() first (both sides then share the tuned allocator)")
    args = ap.parse_args()
    if args.configure:
        print(f"configure_cpu: {metastructure.configure_cpu()}")

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; DENSE_MAX={density.DENSE_MAX}")
    print(f"{'kernel':>9} {'size':>5} {'bw':>4} {'ours ms':>9} {'scipy ms':>9} {'scipy/ours':>10} "
          f"{'ours/copy':>9} {'max|diff|':>9}")
    rng = np.random.default_rng(0)
    for n in args.sizes:
        m_np = rng.random((n, n)) < 0.3
        m = jnp.asarray(m_np)
        x = jnp.asarray(m_np, jnp.float32)
        copy = jax.jit(lambda a: a * 1.0001)
        t_copy = timeit(lambda: copy(x), args.repeat * 4)
        for kernel in args.kernels:
            ours_t = {}
            for bw in args.bandwidths:
                bw = int(bw) if kernel == "box" else bw
                t_ours = timeit(lambda: density.fraction_field(m, bw, kernel=kernel), args.repeat)
                ours_t[bw] = t_ours
                one = np.ones((n, n), np.float32)
                den = (ndi.gaussian_filter(one, bw, mode="constant", truncate=4.0) if kernel == "gaussian"
                       else ndi.uniform_filter(one, size=2 * int(bw) + 1, mode="constant"))
                rep = max(1, min(args.repeat, 3)) if bw >= 16 else args.repeat
                t_scipy = timeit(lambda: scipy_field(m_np, bw, kernel, den), rep)
                diff = float(np.max(np.abs(np.asarray(density.fraction_field(m, bw, kernel=kernel))
                                           - scipy_field(m_np, bw, kernel, den))))
                print(f"{kernel:>9} {n:>5} {bw:>4g} {t_ours:9.2f} {t_scipy:9.2f} {t_scipy / t_ours:10.2f} "
                      f"{t_ours / t_copy:9.1f} {diff:9.1e}", flush=True)
            keys = sorted(ours_t)
            lo = 4 if 4 in ours_t else keys[0]
            print(f"{kernel:>9} {n:>5} flatness ours(bw={keys[-1]:g}) / ours(bw={lo:g}) = "
                  f"{ours_t[keys[-1]] / ours_t[lo]:.2f}; copy {t_copy:.3f} ms")

    for spec in args.volumes:
        shape = tuple(int(v) for v in spec.split(","))
        m_np = rng.random(shape) < 0.3
        m = jnp.asarray(m_np)
        for bw in [b for b in args.bandwidths if b <= min(shape)]:
            den = ndi.gaussian_filter(np.ones(shape, np.float32), bw, mode="constant", truncate=4.0)
            t_ours = timeit(lambda: density.fraction_field(m, bw, ndim=3), args.repeat)
            t_scipy = timeit(lambda: scipy_field(m_np, bw, "gaussian", den), max(1, min(args.repeat, 3)))
            diff = float(np.max(np.abs(np.asarray(density.fraction_field(m, bw, ndim=3))
                                       - scipy_field(m_np, bw, "gaussian", den))))
            print(f"{'3-D gauss':>9} {'x'.join(map(str, shape)):>11} {bw:>4g} {t_ours:9.2f} {t_scipy:9.2f} "
                  f"{t_scipy / t_ours:10.2f} {'':>9} {diff:9.1e}", flush=True)

    if args.primitives:
        for n in args.sizes:
            primitives(n, args.repeat)


if __name__ == "__main__":
    main()
