"""metastructure.__main__: the `python -m metastructure plan` command (masks only, calibrating on images, bad input
as one line naming the file)."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import blobs, write_pngs

from metastructure import __main__ as cli
from metastructure import data, planner
from metastructure.planner import plan as plan_module


@pytest.fixture(scope="module")
def masks():
    return np.stack([blobs((48, 48), seed=s, sigma=2.5, level=0.75) for s in range(4)]).astype(np.int32)


@pytest.fixture(scope="module")
def tiny():
    return data.nuclei(jax.random.key(3), 8, size=32)


# ------------------------------------------------------------------ the command
def _plan(*args, cwd):
    return subprocess.run([sys.executable, "-m", "metastructure", "plan", *map(str, args)], capture_output=True,
                          text=True, check=False, cwd=cwd, timeout=300)


def test_plan_command_masks_only(tmp_path, masks):
    write_pngs(tmp_path / "masks", masks, scale=255)
    proc = _plan(tmp_path / "masks", "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "sample 0.1" in proc.stdout and "dilate 2" in proc.stdout and "memorised" in proc.stdout
    assert "255 -> 1" in proc.stderr  # the 8-bit masks were read as binary, and the user is told
    rec = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert rec["files"] == [f"img{i:02d}.png" for i in range(4)]
    assert rec["calibration"]["source"] == planner.DEFAULT.source
    assert rec["masks"]["foreground_pixels"] == masks.sum()
    assert (tmp_path / "out" / "plan.png").stat().st_size > 20_000


def test_plan_command_calibrates_on_images(tmp_path, tiny):
    ims = np.asarray(tiny.images[..., 0])
    ims = ((ims - ims.min()) / (ims.max() - ims.min()) * 255)
    write_pngs(tmp_path / "masks", tiny.masks)
    write_pngs(tmp_path / "images", ims)
    proc = _plan(tmp_path / "masks", "--images", tmp_path / "images", "--steps", "20", "--repeats", "1",
                 "--crop", "16", "--n-images", "40", "--out", tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "plan.json").read_text())
    cal = rec["calibration"]
    assert cal["source"].startswith("calibrated") and cal["recipe"]["steps"] == 20 and cal["recipe"]["crop"] == 16
    assert cal["law"]["images_seen"] == 20 * 8 / 4  # 16^2 windows of 32^2 images: a quarter image a sample
    assert cal["n_train"] == 6 and len(cal["law"]["points"]) == 4  # 2 sizes x 2 label families x 1 repeat
    # every row is for 40 training images, and every row but random labels has its interval around its Dice
    assert {r["n_images"] for r in rec["rows"]} == {40} and "predicted for 40 training images" in proc.stdout
    assert all(r["interval"][0] <= r["dice"] <= r["interval"][1] for r in rec["rows"] if r["family"] != "RL")
    assert "calibration (calibrated" in proc.stdout and "(up to 6 trainings)" in proc.stderr


@pytest.mark.parametrize("how", ["empty", "not binary", "all foreground", "no masks for images", "too sparse",
                                 "missing", "out is a file", "steps without images", "repeats without images",
                                 "crop without images", "no images", "negative crop"])
def test_plan_command_bad_input_is_one_line_naming_the_file(tmp_path, how, masks, tiny, capsys):
    """Exit status 2 and one line. In this process, but for the case that trains: the command sets up the
    process for training first (``runtime.configure_cpu``), which a test process that has trained already
    would note as too late; that case runs as the command, as do the two tests above."""
    mdir, idir = tmp_path / "masks", tmp_path / "images"
    extra = []
    if how == "empty":
        mdir.mkdir()
        want = "no PNG or TIFF"
    elif how == "not binary":
        bad = masks.copy()
        bad[2, :3, :3] = 2
        write_pngs(mdir, bad)
        want = "masks/img02.png"
    elif how == "all foreground":  # 0/255 masks with no background pixel: main printed a plan, exit 0 (issue 31)
        write_pngs(mdir, np.ones((3, 16, 16), np.uint8), scale=255)
        want = "the 3 mask(s) hold no background pixel"
    elif how == "no masks for images":
        write_pngs(mdir, masks[:2])
        write_pngs(idir, np.zeros((3, 48, 48)))
        extra, want = ["--images", idir], "images without a mask ['img02']"
    elif how == "too sparse":
        sparse = np.zeros((8, 32, 32), np.uint8)
        sparse[:, 5:11, 5:11] = 1  # one 6 x 6 square an image: resolved by the model, too few pixels for a 10% draw
        write_pngs(mdir, sparse)
        write_pngs(idir, np.asarray(tiny.images[..., 0]) * 30 + 100)
        extra, want = ["--images", idir, "--steps", "1"], "too sparse"
    elif how == "out is a file":
        write_pngs(mdir, masks)
        (tmp_path / "out").write_text("")
        want = "out"
    elif how == "negative crop":
        write_pngs(mdir, masks)
        extra, want = ["--crop", "-1"], "--crop must be >= 0"
    elif how in ("steps without images", "repeats without images", "crop without images"):
        write_pngs(mdir, masks)
        extra, want = ["--" + how.split()[0], "5"], "needs --images"
    elif how == "no images":
        write_pngs(mdir, masks)
        extra, want = ["--n-images", "0"], "--n-images must be >= 1"
    else:
        want = "expected a folder"
    argv = [mdir, *extra, "--out", tmp_path / "out"]
    if how == "too sparse":
        proc = _plan(*argv, cwd=tmp_path)
        rc, err = proc.returncode, proc.stderr
    else:
        rc = cli.main(["plan", *map(str, argv)])
        err = capsys.readouterr().err
    assert rc == 2 and want in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_plan_command_advises_what_its_user_can_do_with_instance_masks(tmp_path, masks, capsys):
    """Regression (issue 31): the instance-mask error advised binary=False, which the command cannot pass."""
    write_pngs(tmp_path / "masks", masks[:2] * (1 + np.arange(48 * 48).reshape(48, 48) % 3))
    assert cli.main(["plan", str(tmp_path / "masks"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "masks/img00.png: a binary mask holds 0 and one other value" in err, err
    assert "binary=False" not in err and "save each mask binarised, every label > 0 as 1" in err


def test_plan_command_never_prints_a_table_of_zeros(tmp_path, masks, monkeypatch, capsys):
    """Masks the model cannot describe (main: 1 px lines, every sampled and flipped row at Dice 0) gave a table of
    zeros with exit 0. Whatever the cause, such a plan is refused: status 2, one line, no plan.json."""
    real = plan_module.predict

    def zero(m, label, *, calibration=None, n_images=None):
        p = real(m, label, calibration=calibration, n_images=n_images)
        return p._replace(dice=0.0) if p.family == "RCL" else p

    monkeypatch.setattr(plan_module, "predict", zero)
    write_pngs(tmp_path / "masks", masks)
    rc = cli.main(["plan", str(tmp_path / "masks"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert rc == 2 and "the model predicts Dice 0 for every sampled and flipped label type" in out.err
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) <= 2 and "dilate" not in out.out
    assert not (tmp_path / "out" / "plan.json").exists()


def test_plan_command_on_thin_masks_says_what_it_cannot_predict(tmp_path, capsys):
    """1-px lines (issue 31: every sampled and flipped row printed 0.000): the plan prints the rows the model can
    answer for and names the others with the reason, exit 0."""
    lines = np.zeros((3, 48, 48), np.uint8)
    lines[:, 4::8, 2:46] = 1
    write_pngs(tmp_path / "masks", lines)
    assert cli.main(["plan", str(tmp_path / "masks"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "not predicted: sample 0.5" in out and "too thin" in out and "dilate 1" in out
    assert not any(ln.startswith(("sample", "flip")) for ln in out.splitlines())
    rec = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert {r["label"] for r in rec["not_predicted"]} >= {"sample 0.1", "flip 0.3 0.3", "skeleton"}


def test_plan_command_on_volumes(tmp_path):
    """``--volumes``: a folder of TIFF stacks, planned with 3-D fields; the plan answers "every k-th slice"."""
    tifffile = pytest.importorskip("tifffile")
    vol = data.nuclei(jax.random.key(2), 3, size=24, depth=10, radius=(3.0, 6.0), ndim=3).masks
    (tmp_path / "masks").mkdir()
    for i, v in enumerate(vol):
        tifffile.imwrite(tmp_path / "masks" / f"v{i}.tif", v.astype(np.uint8))
    assert cli.main(["plan", str(tmp_path / "masks"), "--volumes", "--out", str(tmp_path / "out")]) == 0
    rec = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert rec["masks"]["ndim"] == 3 and rec["masks"]["foreground_pixels"] == vol.sum()
    # the 3 volumes are the training set (the default calibration is 2-D): 30 slices, so every 2nd is planned
    # and every 10th (3 labelled slices) is refused, with the reason
    assert {"slices 2", "slices 2 ignore"} <= {r["label"] for r in rec["rows"]}
    refused = {r["label"]: r["reason"] for r in rec["not_predicted"]}
    assert "slices 10" in refused and "fewer than 10" in refused["slices 10"]
    assert cli.main(["plan", str(tmp_path / "masks"), "--out", str(tmp_path / "out2")]) == 2  # 2-D: a stack
