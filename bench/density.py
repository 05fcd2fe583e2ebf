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

    python bench/density.py                 # 512 and 2048, bandwidths 1 4 16 64
    python bench/density.py --sizes 512 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage as ndi

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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--bandwidths", type=float, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--kernels", nargs="+", default=["gaussian", "box"])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
