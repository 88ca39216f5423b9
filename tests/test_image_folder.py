"""Image-folder datasets (issue 3): messy folders, tiling, leak-free splits, bad input, determinism.

Every folder is built here on the fly (conftest.messy_folder): real PNG/TIFF/JPEG files written
by PIL and tifffile, read back by the code under test.
"""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (
    IMAGE_FOLDER_BAD,
    compose,
    field,
    image_folder_overrides,
    messy_folder,
    run_cli,
    save_image,
)
from overfitlab.data.datasets import load_prepared
from overfitlab.data.image_folder.augment import rotate_reflect
from overfitlab.data.image_folder.leakage import leakage_check
from overfitlab.data.image_folder.options import options
from overfitlab.data.image_folder.pixels import read_pages, select_color, to_uint8
from overfitlab.data.image_folder.sources import Source
from overfitlab.data.image_folder.tiles import tile_boxes, tile_file
from overfitlab.prepare import prepare


def prepare_folder(root, **extra):
    return prepare(compose("prepare", image_folder_overrides(root, **extra)))


def read(out):
    return pd.read_csv(out / "manifest.csv"), json.loads((out / "meta.json").read_text())


@pytest.mark.slow
def test_messy_folder_is_prepared_with_bad_files_listed_and_no_leak(project, tmp_path):
    root = messy_folder(tmp_path / "cells")
    result = run_cli(sys.executable, "-m", "overfitlab.prepare", *image_folder_overrides(root))
    assert result.returncode == 0, result.stderr
    out = project / "data" / "prepared" / "cells"
    manifest, meta = read(out)
    assert meta["class_names"] == ["control", "treated"] and meta["in_channels"] == 3  # grey + RGB -> RGB
    skipped = pd.read_csv(out / "skipped.csv").set_index("file")["reason"]
    for bad in IMAGE_FOLDER_BAD:  # each named with its reason, in the log and on stdout
        assert skipped[bad].startswith("unreadable"), skipped
        assert bad in result.stdout
    assert skipped["control/.DS_Store"].startswith("ignored") and skipped["treated/._field0.png"].startswith(
        "ignored"
    )
    assert skipped["control/notes.txt"].startswith("ignored")
    assert "loop" in skipped["treated/loop"]
    # All 4 fields of each class used, the nested run2/ one included; phantoms not.
    assert sorted(manifest.source.unique()) == [
        f"{c}/{p}"
        for c in ("control", "treated")
        for p in ("field0.png", "field1.tif", "field2.png", "run2/field3.png")
    ]
    assert meta["leakage"]["shared_contents"] == 0 and meta["leakage"]["examples_checked"] == len(manifest)
    # Every source image (all its tiles and rotations) in exactly one split.
    assert manifest.groupby("source")["split"].nunique().max() == 1
    assert set(manifest.split) == {"train", "val", "test"}
    data = load_prepared(out)
    for split in ("train", "val", "test"):
        rows = manifest[manifest.split == split]
        assert (rows.label.to_numpy() == data.labels[split].numpy()).all()
        assert data.images[split].shape[1:] == (3, 16, 16)


def test_tile_geometry_grid_size_stride_and_region_bands():
    one = [(0.0, 1.0)]
    assert len(tile_boxes(96, 128, (32, 32), (32, 32), one, "x")) == 3 * 4
    assert len(tile_boxes(96, 128, (32, 32), (16, 16), one, "x")) == 5 * 7  # overlapping
    assert len(tile_boxes(100, 130, (32, 32), (32, 32), one, "x")) == 3 * 4  # partial tiles dropped
    bands = [(0.0, 0.5), (0.5, 0.75), (0.75, 1.0)]
    boxes = tile_boxes(64, 256, (32, 32), (32, 32), bands, "x")
    for region, _top, left in boxes:  # no tile crosses a band boundary
        lo, hi = round(bands[region][0] * 256), round(bands[region][1] * 256)
        assert lo <= left and left + 32 <= hi
    assert [sum(b[0] == r for b in boxes) for r in range(3)] == [2 * 4, 2 * 2, 2 * 2]
    vertical = tile_boxes(256, 64, (32, 32), (32, 32), bands, "y")
    assert all(
        round(bands[r][0] * 256) <= top and top + 32 <= round(bands[r][1] * 256) for r, top, _ in vertical
    )


def test_tiles_are_the_source_pixels_at_their_coordinates(project, tmp_path):
    root = tmp_path / "cells"
    for label, name in enumerate(("a", "b")):
        for i in range(3):
            save_image(root / name / f"f{i}.png", field(label, i))
    prepare_folder(
        root, **{"dataset.image_size": 32, "dataset.augment.rotations": "[0]", "dataset.tiles.stride": 16}
    )
    out = project / "data" / "prepared" / "cells"
    manifest, meta = read(out)
    assert meta["in_channels"] == 1
    assert manifest.groupby("source").size().eq(5 * 7).all()  # 96x128 field, 32 px tiles every 16 px
    data = load_prepared(out)
    for split in ("train", "test"):
        for row_index in (0, 7, len(manifest[manifest.split == split]) - 1):
            row = manifest[manifest.split == split].iloc[row_index]
            label, i = "ab".index(row.source[0]), int(row.source[-5])
            expected = field(label, i)[row.top : row.top + 32, row.left : row.left + 32]
            got = (data.images[split][row_index, 0].numpy() * 255).round().astype(np.uint8)
            assert (got == expected).all()


def test_grid_tiling_and_resize_to_model_input(project, tmp_path):
    root = tmp_path / "cells"
    for label, name in enumerate(("a", "b")):
        for i in range(3):
            save_image(root / name / f"f{i}.png", field(label, i, 90, 120))
    prepare_folder(
        root, **{"dataset.tiles.grid": "[3,4]", "dataset.image_size": 20, "dataset.augment.rotations": "[0]"}
    )
    manifest, meta = read(project / "data" / "prepared" / "cells")
    assert manifest.groupby("source").size().eq(12).all()
    assert set(zip(manifest.height, manifest.width)) == {(30, 30)} and meta["image_size"] == 20


def test_rotations_and_flips_only_in_the_training_split(project, tmp_path):
    root = messy_folder(tmp_path / "cells")
    prepare_folder(root, **{"dataset.augment.rotations": "[-5,0,4]", "dataset.augment.flips": "[horizontal]"})
    out = project / "data" / "prepared" / "cells"
    manifest, meta = read(out)
    train = manifest[manifest.split == "train"]
    assert sorted(train.rotation.unique()) == [-5.0, 0.0, 4.0] and set(train.flip) == {"none", "horizontal"}
    tiles = train[(train.rotation == 0) & (train.flip == "none")]
    assert len(train) == 6 * len(tiles)
    others = manifest[manifest.split != "train"]
    assert others.rotation.eq(0).all() and others.flip.eq("none").all()
    data = load_prepared(out)
    x = data.images["train"].numpy()
    first = train.index.get_loc(tiles.index[0])  # the same tile, rotated: a different image
    rotated = train[
        (train.source == tiles.iloc[0].source)
        & (train.top == tiles.iloc[0].top)
        & (train.left == tiles.iloc[0].left)
        & (train.rotation == 4.0)
        & (train.flip == "none")
    ]
    assert not np.allclose(x[first], x[train.index.get_loc(rotated.index[0])])
    flipped = train[
        (train.source == tiles.iloc[0].source)
        & (train.top == tiles.iloc[0].top)
        & (train.left == tiles.iloc[0].left)
        & (train.rotation == 0.0)
        & (train.flip == "horizontal")
    ]
    assert np.array_equal(x[first][..., ::-1], x[train.index.get_loc(flipped.index[0])])


def test_rotation_is_counter_clockwise_with_reflected_corners():
    tile = np.zeros((1, 1, 33, 33), np.uint8)
    tile[0, 0, 16, 24:] = 255  # a bar pointing right from the centre
    turned = rotate_reflect(tile, 90)[0, 0]
    assert turned[1:8, 16].min() > 200 and turned[17:, 16].max() < 50  # now points up
    bright = np.full((1, 1, 16, 16), 200, np.uint8)
    assert (rotate_reflect(bright, 5) == 200).all()  # no black corners


def test_region_split_keeps_bands_apart_for_one_field_per_class(project, tmp_path):
    root = tmp_path / "one"
    for label, name in enumerate(("a", "b")):
        save_image(root / name / "field.png", field(label, 0, 64, 320))
    prepare_folder(root, **{"dataset.split.by": "region"})
    manifest, meta = read(project / "data" / "prepared" / "cells")
    bounds = {"train": (0, 192), "val": (192, 256), "test": (256, 320)}  # 60 / 20 / 20 % of 320 px
    for split, (lo, hi) in bounds.items():
        rows = manifest[manifest.split == split]
        assert len(rows) and rows.left.ge(lo).all() and (rows.left + rows.width).le(hi).all()
    assert meta["leakage"]["shared_contents"] == 0


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(3, 7), min_size=2, max_size=4),
    size=st.sampled_from([(32, 48), (48, 32), (40, 40)]),
    seed=st.integers(0, 3),
)
def test_group_split_never_straddles_and_is_stratified(project, tmp_path_factory, shape, size, seed):
    root = tmp_path_factory.mktemp("folder")
    for label, n in enumerate(shape):
        for i in range(n):
            save_image(root / f"class{label}" / f"f{i}.png", field(label, i, *size))
    meta = prepare_folder(
        root,
        **{
            "dataset.tiles.size": 16,
            "dataset.image_size": 8,
            "dataset.augment.rotations": "[0,3]",
            "prepare.split_seed": seed,
        },
    )
    manifest, _ = read(project / "data" / "prepared" / "cells")
    assert manifest.groupby("source")["split"].nunique().eq(1).all()  # all tiles and rotations together
    for split in ("train", "val", "test"):  # every class in every split
        assert manifest[manifest.split == split].label.nunique() == len(shape)
    assert meta["groups_per_split"]["train"] + meta["groups_per_split"]["val"] + meta["groups_per_split"][
        "test"
    ] == sum(shape)
    # Fractions 0.6/0.2/0.2 of 3-7 source images per class: 20 % rounds to one image each for
    # validation and test, the rest train (checked per class, independently of assign_groups).
    per_class = manifest.drop_duplicates("source").groupby(["label", "split"]).size().unstack(fill_value=0)
    assert (per_class["val"] == 1).all() and (per_class["test"] == 1).all()
    assert (per_class["train"] == pd.Series(shape) - 2).all()


def test_bit_depth_rescaling_fixed_and_percentile():
    from omegaconf import OmegaConf

    twelve_bit = np.array([[0, 2048, 4095]], np.uint16)[..., None]
    fixed = OmegaConf.create({"scale": "fixed", "percentiles": [0, 100], "range": [0, 4095]})
    assert to_uint8(twelve_bit, fixed).ravel().tolist() == [0, 128, 255]
    full = OmegaConf.create({"scale": "fixed", "percentiles": [0, 100], "range": None})
    sixteen_bit, unit_float = np.array([[0, 65535]], np.uint16), np.array([[0.0, 0.5, 1.0]], np.float32)
    assert to_uint8(sixteen_bit[..., None], full).ravel().tolist() == [0, 255]
    assert to_uint8(unit_float[..., None], full).ravel().tolist() == [0, 128, 255]
    percentile = OmegaConf.create({"scale": "percentile", "percentiles": [0, 100], "range": None})
    dim = np.array([[100, 150, 200]], np.uint16)[..., None]
    assert to_uint8(dim, percentile).ravel().tolist() == [0, 128, 255]
    eight = np.array([[3, 7]], np.uint8)[..., None]
    assert to_uint8(eight, percentile) is eight  # 8-bit images are not stretched


def test_colour_modes_keep_mono_and_pick(project, tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mono = select_color(rgb, "mono", None)
    expected = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    assert mono.shape == (8, 8, 1) and np.abs(mono[..., 0].astype(int) - expected).max() <= 1
    assert np.array_equal(select_color(rgb, "pick", [2, 0]), rgb[..., [2, 0]])
    with pytest.raises(ValueError, match="channel"):
        select_color(rgb[..., :1], "pick", [1])
    root = messy_folder(tmp_path / "cells")
    meta = prepare_folder(root, **{"dataset.color": "mono"})
    assert meta["in_channels"] == 1
    opts = options(
        compose(
            "prepare", image_folder_overrides(root, **{"dataset.color": "pick", "dataset.channels": "[1]"})
        ).dataset
    )
    grey = Source(str(root / "control" / "field0.png"), "control/field0.png", 0, "g")
    assert "dataset.channels asks for [1]" in tile_file(grey, opts).error  # skipped, with the reason
    rgb = Source(str(root / "control" / "field2.png"), "control/field2.png", 0, "g")
    assert tile_file(rgb, opts).images.shape[1] == 1


def test_sixteen_bit_field_gives_the_same_tiles_as_its_8bit_original(project, tmp_path):
    root = tmp_path / "cells"
    for label, name in enumerate(("a", "b")):
        for i in range(3):
            image = field(label, i)
            save_image(root / name / f"f{i}.tif", image.astype(np.uint16) * 257)  # full 16-bit range
    prepare_folder(
        root,
        **{"dataset.bit_depth.scale": "fixed", "dataset.image_size": 32, "dataset.augment.rotations": "[0]"},
    )
    manifest, _ = read(project / "data" / "prepared" / "cells")
    data = load_prepared(project / "data" / "prepared" / "cells")
    row = manifest[manifest.split == "test"].iloc[0]
    expected = field("ab".index(row.source[0]), int(row.source[-5]))[
        row.top : row.top + 32, row.left : row.left + 32
    ]
    assert ((data.images["test"][0, 0].numpy() * 255).round() == expected).all()


def test_exif_orientation_and_multipage_tiff(tmp_path):
    from PIL import Image

    upright = field(0, 0, 40, 64)
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # the camera stored it turned; EXIF says so
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save_image(tmp_path / "photo.jpg", stored, exif=exif.tobytes(), quality=95)
    page = read_pages(str(path), each=False)[0]
    assert page.shape == (40, 64, 1)
    assert np.abs(page[..., 0].astype(int) - upright).mean() < 6  # JPEG loss only
    stack = save_image(tmp_path / "stack.tif", np.stack([field(0, 0), field(1, 0), field(0, 1)]), pages=True)
    assert len(read_pages(str(stack), each=False)) == 1
    pages = read_pages(str(stack), each=True)
    assert len(pages) == 3 and np.array_equal(pages[1][..., 0], field(1, 0))


def test_pages_each_makes_more_tiles_of_the_same_group(project, tmp_path):
    root = tmp_path / "cells"
    for label, name in enumerate(("a", "b")):
        for i in range(3):
            save_image(
                root / name / f"f{i}.tif", np.stack([field(label, i), field(label, 10 + i)]), pages=True
            )
    first = prepare_folder(root)["counts"]
    manifest, meta = read(project / "data" / "prepared" / "cells")
    each = prepare_folder(root, **{"dataset.pages": "each"})["counts"]
    manifest, meta = read(project / "data" / "prepared" / "cells")
    assert each["test"] == 2 * first["test"] and sorted(manifest.page.unique()) == [0, 1]
    assert manifest.groupby("source")["split"].nunique().eq(1).all()


def test_background_tiles_are_dropped_and_counted(project, tmp_path):
    root = tmp_path / "cells"
    for label, name in enumerate(("a", "b")):
        for i in range(3):
            image = field(label, i)
            image[:, :64] = 3  # left half: dark, flat background
            save_image(root / name / f"f{i}.png", image)
    meta = prepare_folder(root, **{"dataset.background.min_mean": 20})
    assert meta["background_dropped"] == {"a": 3 * 6, "b": 3 * 6}  # 3 fields x 3 rows x 2 columns
    manifest, _ = read(project / "data" / "prepared" / "cells")
    assert manifest.left.ge(64).all()


@pytest.mark.slow
def test_duplicate_files_are_caught_by_the_leakage_check_and_grouped_by_pattern(project, tmp_path):
    root = tmp_path / "cells"
    for label, name in enumerate(("a", "b")):
        for i in range(4):
            save_image(root / name / f"field{i}_rot0.png", field(label, i))
        save_image(root / name / "field0_rot5.png", field(label, 0))  # a saved copy of field 0
    # One group per file: with split seed 0 each class's copy lands in another split than its original.
    line = _fails_cleanly(project, root, "prepare.split_seed=0", expect="dataset.on_leak=error")
    assert "24 tile content(s) in two splits" in line and "field0_" in line
    warned = prepare_folder(root, **{"prepare.split_seed": 0, "dataset.on_leak": "warn"})
    assert warned["leakage"]["shared_contents"] == 2 * 12  # 2 classes x 12 tiles of the copied field
    meta = prepare_folder(root, **{"dataset.split.group_pattern": r"'^(field\d+)_'"})
    assert meta["leakage"]["shared_contents"] == 0 and meta["groups_per_split"]["train"] == 4
    manifest, _ = read(project / "data" / "prepared" / "cells")
    copies = manifest[manifest.source.str.startswith("a/field0_")]
    assert copies.split.nunique() == 1
    leak = leakage_check(pd.Series(["h1", "h1", "h2", "h3"]), pd.Series(["train", "test", "train", "val"]))
    assert leak["shared_contents"] == 1 and leak["pairs"] == {"test & train": 1}


def _fails_cleanly(project, root, *overrides, expect: str):
    result = run_cli(
        sys.executable,
        "-m",
        "overfitlab.prepare",
        *image_folder_overrides(root),
        *overrides,
        "out_dir=failed",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], lines
    assert not (project / "failed").exists() and not list(project.glob(".failed*"))  # nothing half-written
    return lines[0]


@pytest.mark.slow
def test_class_without_usable_image_is_one_line_error_and_nothing_written(project, tmp_path):
    root = messy_folder(tmp_path / "cells")
    (root / "empty_class").mkdir()
    (root / "empty_class" / "broken.png").write_bytes(b"\x89PNG\r\n")
    line = _fails_cleanly(project, root, expect="empty_class")
    assert "no usable image" in line


@pytest.mark.slow
def test_fewer_than_two_classes_is_an_error(project, tmp_path):
    root = tmp_path / "one"
    for i in range(3):
        save_image(root / "only" / f"f{i}.png", field(0, i))
    (root / ".hidden_class").mkdir()
    _fails_cleanly(project, root, expect="at least two")


@pytest.mark.slow
def test_tile_larger_than_every_image_is_an_error(project, tmp_path):
    root = messy_folder(tmp_path / "cells")
    _fails_cleanly(project, root, "dataset.tiles.size=500", expect="larger than every image")


@pytest.mark.slow
def test_too_few_fields_for_a_source_split_suggests_the_region_split(project, tmp_path):
    root = tmp_path / "few"
    for label, name in enumerate(("a", "b")):
        for i in range(2):
            save_image(root / name / f"f{i}.png", field(label, i))
    _fails_cleanly(project, root, expect="dataset.split.by=region")


@pytest.mark.slow
@pytest.mark.parametrize(
    "override,key",
    [
        ("dataset.split.fractions=[0.5,0.5,0.5]", "dataset.split.fractions"),
        ("dataset.color=cmyk", "dataset.color"),
        ("dataset.tiles.size=0", "dataset.tiles.size"),
        ("dataset.augment.flips=[sideways]", "dataset.augment.flips"),
        ("dataset.root=/nonexistent", "dataset.root"),
    ],
)
def test_bad_image_folder_options_name_the_key(project, tmp_path, override, key):
    root = messy_folder(tmp_path / "cells")
    _fails_cleanly(project, root, override, expect=key)


def test_output_is_byte_identical_for_any_worker_count(project, tmp_path):
    root = messy_folder(tmp_path / "cells")
    prepare_folder(root, out_dir="a", **{"dataset.workers": 1})
    prepare_folder(root, out_dir="b", **{"dataset.workers": 2})
    prepare_folder(root, out_dir="c", **{"prepare.split_seed": 5})
    names = sorted(p.name for p in (project / "a").iterdir())
    assert "skipped.csv" in names and names == sorted(p.name for p in (project / "b").iterdir())
    for name in names:
        assert (project / "a" / name).read_bytes() == (project / "b" / name).read_bytes(), name
    assert (project / "a" / "manifest.csv").read_bytes() != (project / "c" / "manifest.csv").read_bytes()


@pytest.mark.slow
def test_extra_test_sets_become_named_test_splits(project, tmp_path):
    root = messy_folder(tmp_path / "cells")
    other = tmp_path / "other"
    for label, name in enumerate(("control", "treated")):
        save_image(other / name / "x.png", field(label, 50))
    meta = prepare_folder(root, **{"+dataset.extra_test_sets.other": str(other)})
    assert meta["extra_test_sets"] == ["other"] and meta["counts"]["test@other"] == 2 * 3 * 4
    data = load_prepared(project / "data" / "prepared" / "cells")
    assert data.images["test@other"].shape == (24, 3, 16, 16)
    manifest, _ = read(project / "data" / "prepared" / "cells")
    assert manifest[manifest.split == "test@other"].source.str.startswith("other:").all()
    (other / "mystery").mkdir()
    _fails_cleanly(project, root, f"+dataset.extra_test_sets.other={other}", expect="mystery")


@pytest.mark.slow
def test_extra_test_set_without_usable_image_is_an_error(project, tmp_path):
    root = messy_folder(tmp_path / "cells")
    broken = tmp_path / "broken"
    (broken / "control").mkdir(parents=True)
    (broken / "control" / "x.png").write_bytes(b"")
    _fails_cleanly(
        project, root, f"+dataset.extra_test_sets.broken={broken}", expect="dataset.extra_test_sets.broken"
    )


@pytest.mark.slow
def test_region_band_too_narrow_for_a_tile_names_the_fractions(project, tmp_path):
    root = tmp_path / "one"
    for label, name in enumerate(("a", "b")):
        save_image(root / name / "field.png", field(label, 0, 64, 320))
    _fails_cleanly(
        project,
        root,
        "dataset.split.by=region",
        "dataset.split.fractions=[0.9,0.05,0.05]",
        expect="dataset.split.fractions",
    )


def test_region_split_scales_each_band_from_its_own_pixels(project, tmp_path):
    """Per-image percentiles with a region split: the test band (right 20 %) re-acquired much brighter
    must not change a single training tile, and each band is scaled as if it were a file of its own."""
    twelve_bit = field(0, 0, 64, 320).astype(np.uint16) * 16
    brighter = twelve_bit.copy()
    brighter[:, 256:] = brighter[:, 256:] * 3 + 5000  # only the test band changes
    paths = {
        name: save_image(tmp_path / "fields" / f"{name}.tif", image)
        for name, image in (("plain", twelve_bit), ("bright", brighter))
    }
    opts = options(
        compose(
            "prepare",
            image_folder_overrides(
                tmp_path / "fields", **{"dataset.split.by": "region", "dataset.image_size": 32}
            ),
        ).dataset
    )
    assert opts["bit_depth"].scale == "percentile"
    tiles = {name: tile_file(Source(str(p), name, 0, name), opts) for name, p in paths.items()}
    regions = {name: np.array([box[1] for box in t.boxes]) for name, t in tiles.items()}
    assert np.array_equal(regions["plain"], regions["bright"]) and set(regions["plain"]) == {0, 1, 2}
    train = regions["plain"] == 0
    assert np.array_equal(tiles["plain"].images[train], tiles["bright"].images[train])
    # The training band alone, scaled by its own percentiles, is what the training tiles show.
    band = to_uint8(twelve_bit[:, :192, None], opts["bit_depth"])[..., 0]
    first = tiles["plain"].boxes[0]
    assert first[1:4] == (0, 0, 0) and np.array_equal(tiles["plain"].images[0, 0], band[:32, :32])
    # The bright test band is scaled by its own percentiles too: not saturated, the same tiles.
    test = regions["plain"] == 2
    bright, plain = (tiles[name].images[test].astype(int) for name in ("bright", "plain"))
    assert np.abs(bright - plain).max() <= 1
