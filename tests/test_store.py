"""simulations.store: cell keys, atomic cells, the per-cell lock, verification of what it reads and repair."""

import json
import re
import time

import numpy as np
import pytest

from simulations.store import Store, cell_key


def test_store_keys_and_atomic_cells(tmp_path):
    a = {"kind": "t", "x": 1, "y": [1, 2]}
    assert cell_key(a) == cell_key({"y": [1, 2], "x": 1, "kind": "t"})  # order does not matter
    assert cell_key(a) != cell_key({**a, "x": 2})
    st = Store(tmp_path)

    def boom(spec):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        st.compute(a, boom)
    assert not st.has(a) and not list(tmp_path.rglob("*.json"))  # nothing half-finished
    res, computed = st.compute(a, lambda s: ({"v": np.float32(0.5)}, {"m": np.arange(3)}))
    assert computed and res == {"v": 0.5} and st.result(a) == res
    np.testing.assert_array_equal(st.arrays(a)["m"], np.arange(3))
    assert st.compute(a, boom) == (res, False)  # finished: never recomputed
    assert st.compute(a, lambda s: {"v": 1.0}, force=True) == ({"v": 1.0}, True)


def test_the_cell_lock_makes_concurrent_computes_run_once(tmp_path):
    """Two threads (each its own open file, so flock excludes them as it does processes) compute one missing
    cell at the same moment: the function runs once, and both get its result."""
    import threading

    st = Store(tmp_path)
    calls, barrier = [], threading.Barrier(2)

    def slow(spec):
        calls.append(1)
        time.sleep(0.5)  # the other thread reaches the lock meanwhile
        return {"v": 1.0}

    results = []

    def worker():
        barrier.wait()
        results.append(st.compute({"kind": "t", "x": 1}, slow))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(c for _, c in results) == [False, True]
    assert all(r == {"v": 1.0} for r, _ in results)


def test_store_verifies_what_it_reads(tmp_path):
    """Regression: an edited, foreign, truncated or empty cell JSON was used silently or crashed every reader
    with a traceback naming no file; a missing .npz raised KeyError forever. Each is now recomputed, with a
    warning naming the file, and a reader that meets one gets CorruptCell naming it."""
    from simulations.store import CorruptCell

    st = Store(tmp_path)
    calls = []

    def fn(spec):
        calls.append(spec["x"])
        return {"v": spec["x"] / 3}, {"m": np.arange(spec["x"])}

    a, b = {"kind": "t", "x": 4}, {"kind": "t", "x": 5}
    good_a, _ = st.compute(a, fn)
    st.compute(b, fn)
    ja, jb, za = st.path(a), st.path(b), st.path(a, ".npz")
    original = ja.read_bytes()
    edited = json.loads(original)
    edited["result"]["v"] = 0.0
    damage = {
        "not valid JSON": lambda: ja.write_bytes(original[: len(original) // 2]),
        "empty file": lambda: ja.write_bytes(b""),
        "another cell": lambda: ja.write_bytes(jb.read_bytes()),
        "result was changed": lambda: ja.write_text(json.dumps(edited)),
        "is missing": lambda: za.unlink(),
        "npz was changed": lambda: za.write_bytes(st.path(b, ".npz").read_bytes()),
    }
    for why, hurt in damage.items():
        hurt()
        assert st.problem(a) is not None, why
        with pytest.raises(CorruptCell, match=re.escape(ja.name if "npz" not in why and "missing" not in why
                                                        else za.name)):
            st.arrays(a)
        calls.clear()
        with pytest.warns(RuntimeWarning, match=re.escape(ja.name)):
            res, computed = st.compute(a, fn)
        assert computed and calls == [4] and res == good_a, why  # recomputed once, the same numbers
        assert st.problem(a) is None and st.problem(b) is None
        np.testing.assert_array_equal(st.arrays(a)["m"], np.arange(4))
        assert ja.read_bytes() != b""
    with pytest.raises(KeyError, match="not in the store"):
        st.load({"kind": "t", "x": 6})
