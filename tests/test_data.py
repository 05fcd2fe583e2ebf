"""metastructure.data: the generators, the image normaliser, real nuclei, and loading folders."""


import pickle

import jax
import numpy as np
import pytest
import scipy.ndimage as ndi
from helpers import blobs, write_pngs
from PIL import Image

from metastructure import data

EIGHT = np.ones((3, 3), bool)


# ------------------------------------------------------------------ data
@pytest.mark.parametrize("gen", [data.nuclei, data.mito, data.er, data.scenes])
def test_generators_are_deterministic_by_key(gen):
    a = gen(jax.random.key(0), 3, size=32)
    b = gen(jax.random.key(0), 3, size=32)
    c = gen(jax.random.key(1), 3, size=32)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.masks, c.masks)
    assert a.images.dtype == np.float32 and a.masks.dtype == np.int32
    np.testing.assert_allclose(a.images.mean(axis=(1, 2, 3)), 0, atol=1e-4)  # z-scored per image


@pytest.mark.parametrize("gen", [data.nuclei, data.er])
def test_volume_generators(gen):
    """``ndim=3``: volumes (N, D, H, W) deterministic by key, z-scored per volume, with structure in 3-D (the
    objects cross planes) and different from the 2-D draw."""
    kw = dict(size=24, depth=10, ndim=3) | (dict(radius=(2.5, 5.0)) if gen is data.nuclei else dict(nodes=8))
    a, b, c = gen(jax.random.key(0), 3, **kw), gen(jax.random.key(0), 3, **kw), gen(jax.random.key(1), 3, **kw)
    assert a.images.shape == (3, 10, 24, 24, 1) and a.masks.shape == (3, 10, 24, 24)
    assert a.images.dtype == np.float32 and a.masks.dtype == np.int32 and set(np.unique(a.masks)) == {0, 1}
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.masks, c.masks)
    np.testing.assert_allclose(a.images.mean(axis=(1, 2, 3, 4)), 0, atol=1e-4)
    labels, count = ndi.label(a.masks[0])
    assert count >= 1 and max(np.ptp(np.nonzero(labels == i)[0]) for i in range(1, count + 1)) >= 2  # spans z
    # the image shows the structure: brighter inside than outside
    inside = [x[..., 0][m == 1].mean() - x[..., 0][m == 0].mean() for x, m in zip(a.images, a.masks, strict=True)]
    assert min(inside) > 0.3
    with pytest.raises(ValueError, match="ndim"):
        gen(jax.random.key(0), 1, size=16, ndim=4)


def test_microscope_blurs_volumes_z_blur_times_more_along_z():
    """The oracle: with many photons and no read noise the image of one bright voxel is, up to the z-score's
    affine map and shot noise, scipy's gaussian_filter with sigma (z_blur * psf_sigma, psf_sigma, psf_sigma)."""
    s = np.zeros((1, 25, 25, 25), np.float32)
    s[0, 12, 12, 12] = 1.0
    img = data.microscope(jax.random.key(0), s, psf_sigma=1.0, z_blur=3.0, photons=1e7, background=0.0,
                          read_noise=0.0, ndim=3)[0, ..., 0]
    want = ndi.gaussian_filter(s[0], (3.0, 1.0, 1.0), mode="constant")
    assert np.corrcoef(img.ravel(), want.ravel())[0, 1] > 0.9999
    iso = ndi.gaussian_filter(s[0], 1.0, mode="constant")
    assert np.corrcoef(img.ravel(), iso.ravel())[0, 1] < 0.9
    w = img - img.min()
    var = [float((w.sum(axis=tuple(j for j in range(3) if j != a)) * (np.arange(25) - 12) ** 2).sum() / w.sum())
           for a in range(3)]
    assert var[0] / var[1] == pytest.approx(9.0, rel=0.02) and var[1] / var[2] == pytest.approx(1.0, rel=0.02)


def test_as_images_checks_layouts_and_zscores_per_image():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(3, 5, 6, 2))
    z = data.as_images(x, zscore=True)
    assert z.dtype == np.float32 and z.shape == x.shape
    flat = x.reshape(3, -1)  # the oracle: each image over all its pixels and channels, population sd
    want = (flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)
    np.testing.assert_allclose(z.reshape(3, -1), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.as_images(x, dtype=np.float64), x)  # no z-score: the values as given
    assert data.as_images(x.astype(np.uint8)).dtype == np.float32
    gray = data.as_images(x[..., 0], strict=False, zscore=True)  # (N, H, W): one channel, z-scored per image
    np.testing.assert_allclose(gray, data.as_images(x[..., :1], zscore=True), rtol=1e-6, atol=1e-6)
    assert data.as_images(x[0, ..., 0], strict=False).shape == (1, 5, 6, 1)  # (H, W): one image
    with pytest.raises(ValueError, match=r"images must be \(N, H, W, C\), got shape \(3, 5, 6\)"):
        data.as_images(x[..., 0])  # strict: only (N, H, W, C)
    with pytest.raises(ValueError, match="pictures must be"):
        data.as_images(x[None], name="pictures", strict=False)
    bad = x.copy()
    bad[1, 2, 3, 0] = np.inf
    with pytest.raises(ValueError, match="images contains NaN or infinite"):
        data.as_images(bad)
    with pytest.raises(ValueError, match="empty"):
        data.as_images(np.zeros((0, 4, 4, 1)))
    with pytest.raises(TypeError, match="real-valued"):
        data.as_images(x.astype(complex))


def test_as_images_reads_volumes_with_ndim_3():
    rng = np.random.default_rng(1)
    v = rng.normal(3.0, 2.0, size=(2, 3, 4, 5, 1))
    z = data.as_images(v, zscore=True, ndim=3)
    flat = v.reshape(2, -1)  # each volume over all its voxels
    np.testing.assert_allclose(z.reshape(2, -1), (flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.as_images(v[..., 0], strict=False, ndim=3), v.astype(np.float32))
    assert data.as_images(v[0, ..., 0], strict=False, ndim=3).shape == (1, 3, 4, 5, 1)  # (D, H, W): one volume
    with pytest.raises(ValueError, match=r"images must be \(N, D, H, W, C\), got shape \(2, 3, 4, 5\)"):
        data.as_images(v[..., 0], ndim=3)
    with pytest.raises(ValueError, match="ndim"):
        data.as_images(v, ndim=4)


def test_structure_widths():
    er = data.er(jax.random.key(3), 6, size=96)
    mi = data.mito(jax.random.key(3), 6, size=96)
    nu = data.nuclei(jax.random.key(3), 6, size=96)
    # the distance to background on the medial axis is the half-width (a 3-px line
    # has 2 at its centre); junctions and crossings are wider, so take the 90th percentile
    from skimage.morphology import skeletonize

    def half_width(ms):
        return np.percentile(np.concatenate([ndi.distance_transform_edt(m)[skeletonize(m > 0)] for m in ms]), 90)

    assert half_width(er.masks) <= 2.0  # ER tubules 1-3 px wide
    assert 2.0 <= half_width(mi.masks) <= 4.5  # MITO rods 3-8 px wide
    assert half_width(nu.masks) >= 4.0  # nuclei are blobs
    for m in er.masks:  # a connected network: the largest component holds most of it
        lab, n = ndi.label(m, EIGHT)
        sizes = np.bincount(lab.ravel())[1:]
        assert sizes.max() >= 0.8 * m.sum()


def test_more_photons_more_signal():
    m = data.nuclei(jax.random.key(4), 4, size=64).masks
    corr = []
    for photons in (2.0, 200.0):
        img = data.microscope(jax.random.key(5), m, photons=photons)[..., 0]
        corr.append(np.corrcoef(img.ravel(), m.ravel())[0, 1])
    assert corr[1] > corr[0] + 0.1


def test_scenes_have_all_classes_and_distinct_colours():
    s = data.scenes(jax.random.key(6), 4, size=64, num_classes=5)
    assert s.images.shape == (4, 64, 64, 3) and set(np.unique(s.masks)) <= set(range(5))
    means = np.array([s.images[s.masks == c].mean(0) for c in np.unique(s.masks)])
    assert np.min([np.linalg.norm(a - b) for i, a in enumerate(means) for b in means[i + 1 :]]) > 0.2


def test_scenes_objects_give_many_small_regions_and_leave_the_default_alone():
    """objects=24 over 6 regions: many small connected regions (scipy's labelling as the oracle) beside a few
    large ones; objects=0 draws what the generator drew before the parameter (a pinned hash of its labels)."""
    import hashlib

    base = data.scenes(jax.random.key(5), 3, size=32, num_classes=4)
    assert hashlib.sha256(np.asarray(base.masks, np.int32).tobytes()).hexdigest()[:16] == "af0e1b23c9c433ee"
    s = data.scenes(jax.random.key(1), 8, size=64, num_classes=19, regions=6, objects=24)
    lab = np.asarray(s.masks)
    assert set(np.unique(lab)) <= set(range(19)) and len(np.unique(lab)) >= 17
    sizes = np.concatenate([np.bincount(ndi.label(im == c)[0].ravel())[1:] for im in lab for c in range(19)])
    plain = np.asarray(data.scenes(jax.random.key(1), 8, size=64, num_classes=19, regions=6).masks)
    n_plain = sum(ndi.label(im == c)[1] for im in plain for c in range(19))
    assert len(sizes) > 3 * n_plain and np.median(sizes) < 80 and sizes.max() > 400  # many small, a few large
    for bad in ({"objects": -1}, {"regions": 0}):
        with pytest.raises(ValueError):
            data.scenes(jax.random.key(0), 1, **bad)


def test_real_nuclei_tiles():
    if not data.real_available():
        pytest.skip("real nuclei need the stardist wheel's files: pip install --no-deps stardist==0.9.2")
    r = data.real_nuclei(tile=128)
    assert [len(r[k]) for k in ("train", "val", "test")] == [8, 4, 4]
    assert r["train"].images.shape[1:] == (128, 128, 1)
    assert 0.1 < r["test"].masks.mean() < 0.35  # nuclei cover ~20% of the image
    # the tiles of the three splits are different pieces of the image
    flat = [t.tobytes() for k in r for t in r[k].images]
    assert len(set(flat)) == 16


def test_load_folder(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray((rng.random((16, 20)) * 255).astype(np.uint8)).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray((rng.random((16, 20)) > 0.5).astype(np.uint8)).save(tmp_path / "masks" / f"{name}.png")
    d = data.load_folder(tmp_path)
    assert d.images.shape == (2, 16, 20, 1) and d.masks.shape == (2, 16, 20)
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(tmp_path / "images" / "c.png")
    with pytest.raises(ValueError, match="unmatched"):
        data.load_folder(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / "c.png")
    with pytest.raises(ValueError, match="differ"):
        data.load_folder(tmp_path)
    import tifffile

    (tmp_path / "masks" / "c.png").unlink()
    tifffile.imwrite(tmp_path / "masks" / "c.tif", np.full((16, 20), 0.5, np.float32))
    with pytest.raises(ValueError, match="integer"):
        data.load_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="folder"):
        data.load_folder(tmp_path / "nope")


# ------------------------------------------------------------------ masks and image/mask pairs from folders
@pytest.fixture(scope="module")
def masks():
    return np.stack([blobs((48, 48), seed=s, sigma=2.5, level=0.75) for s in range(4)]).astype(np.int32)


def test_load_masks_and_load_pairs(tmp_path, masks):
    write_pngs(tmp_path / "m", masks[:2], scale=255)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "m" / "small.png")  # masks may differ in size
    with pytest.warns(UserWarning, match="255 -> 1"):
        names, ms = data.load_masks(tmp_path / "m")
    assert names == ["img00.png", "img01.png", "small.png"] and ms[2].shape == (20, 30)
    assert all(m.dtype == np.int32 and set(np.unique(m)) <= {0, 1} for m in ms)
    np.testing.assert_array_equal(ms[0], masks[0])
    write_pngs(tmp_path / "i", np.full((2, 48, 48), 7))
    write_pngs(tmp_path / "m2", masks[:2])
    d = data.load_pairs(tmp_path / "i", tmp_path / "m2")
    assert d.images.shape == (2, 48, 48, 1) and d.masks.shape == (2, 48, 48)
    with pytest.raises(FileNotFoundError, match="expected a folder"):
        data.load_masks(tmp_path / "nope")


# ------------------------------------------------------------------ issue 31: stacks, huge values, odd entries
def _zscore(x):
    """The oracle: (x - mean) / sd of one image in float64 (population sd), from the exact values."""
    x = np.asarray(x, np.float64)
    return (x - x.mean()) / x.std()


def _mask_png(folder, mask, name="a"):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, np.uint8)).save(folder / f"{name}.png")


def test_load_pairs_reads_the_tiff_axes_and_refuses_stacks(tmp_path):
    """Regression (issue 31, item 5): a (Z, H, W) stack with Z == H was read as an (H, W) image of Z channels."""
    import tifffile

    rng = np.random.default_rng(0)
    mask = (rng.random((8, 8)) < 0.5).astype(np.uint8)
    stacks = {"plain": ({}, "Q=8"), "imagej": ({"imagej": True, "metadata": {"axes": "ZYX"}}, "Z=8")}
    for name, (kw, axis) in stacks.items():
        (tmp_path / name / "i").mkdir(parents=True)
        tifffile.imwrite(tmp_path / name / "i" / "a.tif", rng.random((8, 8, 8)).astype(np.float32), **kw)
        _mask_png(tmp_path / name / "m", mask)
        with pytest.raises(ValueError, match=rf"i/a\.tif: a stack of 8 planes \({axis};"):
            data.load_pairs(tmp_path / name / "i", tmp_path / name / "m")
        (tmp_path / name / "m" / "a.png").unlink()
        tifffile.imwrite(tmp_path / name / "m" / "a.tif", np.stack([mask] * 8), **kw)
        with pytest.raises(ValueError, match=r"m/a\.tif: a stack of 8 planes"):
            data.load_masks(tmp_path / name / "m")
    # channels the file names as such are channels: RGB samples (contiguous or planar) and ImageJ channel pages
    img = rng.integers(0, 255, (3, 8, 8)).astype(np.uint8)  # (C, H, W)
    for name, arr, kw in [("rgb", img.transpose(1, 2, 0), {"photometric": "rgb"}),
                          ("planar", img, {"photometric": "rgb", "planarconfig": "separate"}),
                          ("ij_channels", img, {"imagej": True, "metadata": {"axes": "CYX"}})]:
        (tmp_path / name / "i").mkdir(parents=True)
        tifffile.imwrite(tmp_path / name / "i" / "a.tif", arr, **kw)
        _mask_png(tmp_path / name / "m", mask)
        d = data.load_pairs(tmp_path / name / "i", tmp_path / name / "m")
        assert d.images.shape == (1, 8, 8, 3), name
        np.testing.assert_allclose(d.images[0], _zscore(img.transpose(1, 2, 0)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale,dtype", [(1e19, np.float32), (1e36, np.float32), (1e300, np.float64)])
def test_load_pairs_keeps_the_contrast_of_huge_values(tmp_path, scale, dtype):
    """Regression (issue 31, item 5): |values| near 1e19 or more became all zeros (float32 overflow in the
    z-score); float64 files beyond float32's range were called infinite."""
    import tifffile

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (12, 10)).astype(np.float64)
    (tmp_path / "i").mkdir()
    _mask_png(tmp_path / "m", x > 128)
    Image.fromarray(x.astype(np.uint8)).save(tmp_path / "i" / "a.png")
    small = data.load_pairs(tmp_path / "i", tmp_path / "m").images[0, ..., 0]
    (tmp_path / "i" / "a.png").unlink()
    tifffile.imwrite(tmp_path / "i" / "a.tif", (x * scale).astype(dtype))
    huge = data.load_pairs(tmp_path / "i", tmp_path / "m").images[0, ..., 0]
    np.testing.assert_allclose(huge, _zscore(x), rtol=1e-6, atol=1e-6)  # the same normalised values
    np.testing.assert_allclose(huge, small, rtol=1e-6, atol=1e-6)
    # as_images itself: huge float32 images keep their contrast; ordinary ones are what they were
    z = data.as_images((np.stack([x, x]) * np.array([1.0, 1e30])[:, None, None]).astype(np.float32), strict=False,
                       zscore=True)
    np.testing.assert_allclose(z[1], z[0], rtol=1e-5, atol=1e-5)


def test_loaders_name_folders_and_broken_links_named_like_images(tmp_path, masks):
    """Regression (issue 31): a folder ``a.tif`` or a dangling link among the images gave "unmatched names ...
    masks without an image ['a']"; load_masks skipped them silently."""
    write_pngs(tmp_path / "i", np.full((2, 48, 48), 7))
    write_pngs(tmp_path / "m", masks[:2])
    (tmp_path / "i" / "img01.png").unlink()
    (tmp_path / "i" / "img01.png").mkdir()  # a folder named like an image
    with pytest.raises(ValueError, match=r"i/img01\.png: a folder, not an image file"):
        data.load_pairs(tmp_path / "i", tmp_path / "m")
    (tmp_path / "i" / "img01.png").rmdir()
    (tmp_path / "i" / "img01.png").symlink_to(tmp_path / "gone.png")  # a broken link
    with pytest.raises(ValueError, match=r"i/img01\.png: a broken symbolic link"):
        data.load_pairs(tmp_path / "i", tmp_path / "m")
    (tmp_path / "m" / "img01.png").unlink()
    (tmp_path / "m" / "img01.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ValueError, match=r"m/img01\.png: a broken symbolic link"):
        data.load_masks(tmp_path / "m")
    (tmp_path / "m" / "img01.png").unlink()
    (tmp_path / "m" / "notes").mkdir()  # a folder with another name is none of the loaders' business
    assert data.load_masks(tmp_path / "m")[0] == ["img00.png"]


def test_instance_masks_are_refused_with_advice_the_caller_can_follow(tmp_path, masks):
    """Regression (issue 31): the error advised binary=False, which `python -m metastructure plan` cannot pass
    (its own advice: tests/test_metastructure_cli.py)."""
    inst = masks[:1] * np.arange(1, 48 * 48 + 1).reshape(48, 48) % 5
    write_pngs(tmp_path / "m", inst)
    with pytest.raises(data.NotBinaryMaskError, match=r"img00\.png: .* found 5 values \[0, 1, 2, 3, 4\].*"
                       "binary=False") as info:
        data.load_masks(tmp_path / "m")
    assert info.value.path == tmp_path / "m" / "img00.png" and info.value.values == [0, 1, 2, 3, 4]
    assert isinstance(info.value, ValueError)
    again = pickle.loads(pickle.dumps(info.value))  # as a Dask worker sends it back
    assert str(again) == str(info.value) and again.values == info.value.values
    assert data.load_masks(tmp_path / "m", binary=False)[1][0].max() == 4


def test_a_tiff_with_a_thumbnail_reads_its_image_and_series_of_one_size_are_a_stack(tmp_path):
    """A second TIFF series of another shape (a thumbnail or preview) is not a stack: the first series is the
    image, as tifffile.imread reads it; series of the image's own shape are planes of a stack, refused by name."""
    import tifffile

    rng = np.random.default_rng(1)
    image = rng.random((16, 16)).astype(np.float32)
    mask = (rng.random((16, 16)) < 0.5).astype(np.uint8)
    for name, extra in (("thumb", image[:4, :4]), ("stack", image[::-1])):
        (tmp_path / name / "i").mkdir(parents=True)
        tifffile.imwrite(tmp_path / name / "i" / "a.tif", image)
        tifffile.imwrite(tmp_path / name / "i" / "a.tif", extra, append=True)
        _mask_png(tmp_path / name / "m", mask)
    got = data.load_pairs(tmp_path / "thumb" / "i", tmp_path / "thumb" / "m")
    np.testing.assert_allclose(got.images[0, ..., 0], (image - image.mean()) / (image.std() + 1e-6), atol=1e-5)
    with pytest.raises(ValueError, match=r"a\.tif: the file holds 2 images of one size"):
        data.load_pairs(tmp_path / "stack" / "i", tmp_path / "stack" / "m")


def test_volumes_load_from_tiff_stacks(tmp_path):
    """``ndim=3``: one volume per TIFF, planes as plain pages or ImageJ Z, read (D, H, W); images (N, D, H, W, C)
    z-scored per volume; a PNG, a time series or a stack read as 2-D are refused with what to do."""
    tifffile = pytest.importorskip("tifffile")
    (tmp_path / "m").mkdir()
    (tmp_path / "i").mkdir()
    rng = np.random.default_rng(0)
    m = np.zeros((5, 8, 9), np.uint8)
    m[1:3, 2:5, 3:6] = 255
    im = rng.random((5, 8, 9)).astype(np.float32)
    tifffile.imwrite(tmp_path / "m" / "a.tif", m)  # plain pages
    tifffile.imwrite(tmp_path / "i" / "a.tif", im)
    tifffile.imwrite(tmp_path / "m" / "b.tif", m[:, ::-1], imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "i" / "b.tif", im[:, ::-1], imagej=True, metadata={"axes": "ZYX"})
    with pytest.warns(UserWarning, match="255 -> 1"):
        names, masks = data.load_masks(tmp_path / "m", ndim=3)
    assert names == ["a.tif", "b.tif"] and [x.shape for x in masks] == [(5, 8, 9)] * 2
    np.testing.assert_array_equal(masks[0], m // 255)
    np.testing.assert_array_equal(masks[1], m[:, ::-1] // 255)
    with pytest.warns(UserWarning):
        ds = data.load_pairs(tmp_path / "i", tmp_path / "m", ndim=3)
    assert ds.images.shape == (2, 5, 8, 9, 1) and ds.masks.shape == (2, 5, 8, 9)
    np.testing.assert_allclose(ds.images[0, ..., 0], (im - im.mean()) / (im.std() + 1e-6), atol=1e-5)
    with pytest.raises(ValueError, match=r"a stack of 5 planes.*ndim=3"):
        data.load_masks(tmp_path / "m")
    tifffile.imwrite(tmp_path / "t.tif", np.zeros((2, 3, 8, 9), np.uint8), imagej=True, metadata={"axes": "TZYX"})
    (tmp_path / "t").mkdir()
    (tmp_path / "t.tif").rename(tmp_path / "t" / "t.tif")
    with pytest.raises(ValueError, match="one stack axis"):
        data.load_masks(tmp_path / "t", ndim=3)
    (tmp_path / "p").mkdir()
    from PIL import Image

    Image.fromarray(m[0]).save(tmp_path / "p" / "a.png")
    with pytest.raises(ValueError, match="TIFF stacks"):
        data.load_masks(tmp_path / "p", ndim=3)


def test_real_nuclei_volume_columns():
    """``real_nuclei(ndim=3)``: the wheel's nuclei volume cut into full-depth columns, binary masks, every column
    in one split, z-scored per column."""
    if not data.real_available():
        pytest.skip("real nuclei need the stardist wheel's files: pip install --no-deps stardist==0.9.2")
    r = data.real_nuclei(ndim=3)  # 16 x 16 columns by default
    assert {k: v.images.shape for k, v in r.items()} == {"train": (4, 31, 16, 16, 1), "val": (2, 31, 16, 16, 1),
                                                          "test": (3, 31, 16, 16, 1)}
    assert all(set(np.unique(v.masks)) == {0, 1} for v in r.values())
    assert 0.3 < np.mean([v.masks.mean() for v in r.values()]) < 0.5  # nuclei fill about 38% of the volume
    np.testing.assert_allclose(r["train"].images.mean(axis=(1, 2, 3, 4)), 0, atol=1e-4)
    with pytest.raises(ValueError, match="tile"):
        data.real_nuclei(tile=64, ndim=3)
