"""configure_cpu and use_compilation_cache: what they set, that it takes effect (numbers unchanged where
promised), and that they refuse to act too late.

Each case runs in a fresh Python process, because the settings only act before
JAX's backend starts (and this test process has started it long ago).
"""

import json
import os
import platform
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import pytest

import metastructure
from metastructure import runtime

PROBE = textwrap.dedent("""
    import json, os, resource, sys
    import metastructure
    done = metastructure.configure_cpu(xla=sys.argv[1] == "1", allocator=sys.argv[2] == "1")
    import jax, jax.numpy as jnp
    from metastructure import losses, nets, train

    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum())
    hlo = conv.lower(jnp.ones((2, 16, 16, 8)), jnp.ones((3, 3, 8, 8))).compile().as_text()

    params = None
    if "fit" in sys.argv[3]:  # a few training steps: the parameters' hash
        import hashlib, numpy as np
        from metastructure import data
        d = data.nuclei(jax.random.key(0), 8, size=32)
        r = train.fit(jax.random.key(1), d.images, d.masks, model=nets.unet(widths=(8, 16)), steps=5, batch_size=4,
                      progress=False)
        leaves = jax.tree_util.tree_leaves(r.params)
        params = hashlib.sha256(b"".join(np.asarray(a).tobytes() for a in leaves)).hexdigest()

    faults = None
    if "faults" in sys.argv[3]:  # steps of a small U-Net at 128^2: scratch buffers beyond glibc's mmap threshold
        model = nets.unet(widths=(8, 16))
        opt = train.make_optimizer("adam", learning_rate=1e-3)
        s = train.init(jax.random.key(0), model, 1, opt)
        x, y = jnp.ones((8, 128, 128, 1)), jnp.ones((8, 128, 128), jnp.int32)
        f = jax.jit(lambda s, a, b: train.step(s, a, b, model=model, optimizer=opt, loss=losses.bce_with_logits))
        for _ in range(10):
            s, v = f(s, x, y)
            jax.block_until_ready(v)
        windows = []  # the steady state: the quietest of three windows (a busy machine adds arena growth)
        for _ in range(3):
            r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(5):
                s, v = f(s, x, y)
                jax.block_until_ready(v)
            windows.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 5)
        faults = min(windows)
    print(json.dumps({"done": done, "flags": os.environ.get("XLA_FLAGS", ""), "ynn_in_hlo": "ynn" in hlo,
                      "faults_per_step": faults, "params": params}))
""")


def probe(xla: bool, allocator: bool, flags: str | None = None, parts: str = "") -> dict:
    """Configure a fresh process as asked, then report; ``parts`` may name ``fit`` and ``faults``."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if flags is not None:
        env["XLA_FLAGS"] = flags
    out = subprocess.run([sys.executable, "-c", PROBE, str(int(xla)), str(int(allocator)), parts], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


needs_ynn = pytest.mark.skipif(not runtime.has_ynn_flag(), reason="this jaxlib has no YNNPACK flag")
needs_glibc = pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                                 reason="the allocator setting is for glibc on Linux")


@pytest.mark.slow
@needs_ynn
def test_xla_setting_takes_ynnpack_out_of_the_compiled_program_and_stays_deterministic():
    plain = probe(False, False)
    tuned, again = probe(True, True, parts="fit"), probe(True, True, parts="fit")
    assert plain["done"] == {"xla": False, "allocator": False} and plain["ynn_in_hlo"]
    assert tuned["done"]["xla"] is True and not tuned["ynn_in_hlo"]
    assert tuned["flags"].split() == [runtime.YNN_FLAG]
    # same key, same configuration: bitwise identical parameters
    assert tuned["params"] == again["params"]


@pytest.mark.slow
@needs_ynn
def test_a_users_own_ynn_flag_is_kept():
    mine = "--xla_cpu_experimental_ynn_fusion_type=individual_dot --xla_cpu_enable_fast_math=false"
    got = probe(True, False, flags=mine)
    assert got["done"]["xla"] == "user" and got["flags"] == mine


@pytest.mark.slow
@needs_glibc
def test_allocator_setting_stops_the_per_step_page_faults():
    plain = probe(False, False, parts="faults")
    tuned = probe(False, True, parts="faults")
    assert tuned["done"] == {"xla": False, "allocator": True}
    # untuned, every step maps its scratch buffers afresh and faults them in (thousands of pages);
    # tuned, the same pages are reused
    assert plain["faults_per_step"] > 1000, plain
    assert tuned["faults_per_step"] < plain["faults_per_step"] / 20, (plain, tuned)


def test_too_late_warns_and_changes_nothing(monkeypatch):
    jnp.ones(2).block_until_ready()  # this process's backend is running
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    with pytest.warns(RuntimeWarning, match="before the first JAX computation"):
        done = metastructure.configure_cpu()
    assert done == {"xla": False, "allocator": False}
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"
    assert metastructure.configure_cpu(xla=False, allocator=False) == {"xla": False, "allocator": False}


CACHE_PROBE = textwrap.dedent("""
    import collections, hashlib, json, os, sys
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:int(sys.argv[1])])  # before XLA makes its threads
    from metastructure import runtime
    cache = runtime.use_compilation_cache(path=sys.argv[2]) if sys.argv[2] else None
    import jax, numpy as np
    events = collections.Counter()
    jax.monitoring.register_event_listener(lambda event, **kw: events.update([event.rsplit("/", 1)[-1]]))
    from metastructure import data, nets, train
    d = data.nuclei(jax.random.key(0), 8, size=32)
    r = train.fit(jax.random.key(1), d.images, d.masks, model=nets.unet(widths=(8, 16)), steps=5, batch_size=4,
                  progress=False)
    h = hashlib.sha256(b"".join(np.asarray(a).tobytes() for a in jax.tree_util.tree_leaves(r.params))).hexdigest()
    print(json.dumps({"cache": None if cache is None else str(cache), "params": h,
                      "hits": events["cache_hits"], "misses": events["cache_misses"]}))
""")


def cached_fit(cores: int, cache) -> dict:
    """A few training steps in a fresh process on ``cores`` cores, with the cache in ``cache`` (None: off)."""
    env = {k: v for k, v in os.environ.items() if k != runtime.CACHE_ENV}
    out = subprocess.run([sys.executable, "-c", CACHE_PROBE, str(cores), str(cache or "")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="pins processes to one and to two cores")
def test_a_cache_written_on_one_core_serves_two_and_changes_no_number(tmp_path):
    cache = tmp_path / "cache"
    one = cached_fit(1, cache)
    assert one["cache"] == str(cache) and one["hits"] == 0 and one["misses"] > 10  # every program written
    entries = sorted(p.name for p in cache.rglob("*-cache"))  # beside them: access times and a lock file
    assert len(entries) == one["misses"]
    assert one["params"] == cached_fit(1, None)["params"]  # writing the cache changes nothing
    two = cached_fit(2, cache)
    assert two["cache"] == str(cache) and two["misses"] == 0 and two["hits"] == one["misses"]  # every one loaded
    # XLA splits its sums over the threads it has when the program runs, not when it was compiled: the
    # two-core process that loaded one-core programs computes what a two-core process compiling its own does,
    # which is not what the one-core process computed
    alone = cached_fit(2, None)
    assert alone["hits"] == 0 and two["params"] == alone["params"] != one["params"]


def test_an_unwritable_cache_falls_back_or_stays_off(monkeypatch, tmp_path):
    import jax

    set_to = {}
    monkeypatch.setattr(runtime, "backend_started", lambda: False)  # as in a fresh process
    monkeypatch.setattr(jax.config, "update", lambda name, value: set_to.__setitem__(name, value))
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # nothing can be made under a regular file, root or not
    assert runtime.use_compilation_cache(path=blocked / "cache") is None and set_to == {}
    assert runtime.use_compilation_cache(path=blocked / "cache", fallback=tmp_path / "local") == tmp_path / "local"
    assert set_to["jax_compilation_cache_dir"] == str(tmp_path / "local")
    assert set_to["jax_persistent_cache_min_compile_time_secs"] == 0
    assert list((tmp_path / "local").iterdir()) == []  # the write probe leaves nothing behind
    set_to.clear()
    monkeypatch.setenv(runtime.CACHE_ENV, "")
    assert runtime.use_compilation_cache() is None and set_to == {}  # off
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "env"))
    assert runtime.use_compilation_cache() == tmp_path / "env" and set_to["jax_compilation_cache_dir"] == str(
        tmp_path / "env")


def test_compilation_cache_dir_and_its_switch(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.CACHE_ENV, "")
    assert runtime.compilation_cache_dir() is None
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path))
    assert runtime.compilation_cache_dir() == tmp_path
    monkeypatch.delenv(runtime.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = runtime.compilation_cache_dir()
    assert d.parent == tmp_path / "metastructure" / "jax" and len(d.name) == 12  # a fingerprint of CPU and jaxlib


def test_compilation_cache_too_late_warns_and_changes_nothing(tmp_path):
    import jax

    jnp.ones(2).block_until_ready()  # this process's backend is running
    before = jax.config.jax_compilation_cache_dir
    with pytest.warns(RuntimeWarning, match="before the first JAX computation"):
        assert runtime.use_compilation_cache(path=tmp_path / "c") is None
    assert jax.config.jax_compilation_cache_dir == before and not (tmp_path / "c").exists()
