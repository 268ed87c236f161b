"""Images as a user hands them over: what imagefolder does to them is said, images too small
for the space are refused, the crop is scaled to the image, and a dataset chooses its own
augmentation unless the user does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import nasplug
import nasplug.engine.userdata
from nasplug.core.options import OptionError
from nasplug.core.types import Data, Task
from nasplug.engine import augment
from nasplug.engine.trainer import Trainer
from nasplug_builtins.datasets import ImageFolder

SEARCH = {"epochs": 1, "batch_size": 8, "device": "cpu"}


def _folder(root, sizes, mode: str, suffix: str, per_class: int = 4):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            channels = (3,) if mode == "RGB" else ()
            pixels = rng.integers(0, 256, size=(h, w, *channels), dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{i}{suffix}")
    return root


def test_imagefolder_says_how_it_converts_grey_and_mixed_size_images(tmp_path):
    grey = _folder(tmp_path / "grey", [(28, 28)], "L", ".png")
    note = ImageFolder(path=str(grey)).load().note
    assert note == (
        "imagefolder: 8 images (28x28, mode L) -> 3x32x32: resized, grey copied into 3 "
        "channels (options size=, grayscale=)"
    )
    assert "3 channels" not in ImageFolder(path=str(grey), grayscale=True, size=28).load().note
    assert (
        ImageFolder(path=str(grey), grayscale=True, size=28)
        .load()
        .note.endswith("-> 1x28x28: unchanged (options size=, grayscale=)")
    )
    mixed = _folder(tmp_path / "mixed", [(20, 30), (64, 48)], "RGB", ".jpg")
    note = ImageFolder(path=str(mixed), size=8).load().note
    assert "(2 sizes, 20-64 wide and 30-48 high, mode RGB) -> 3x8x8" in note
    assert "resized (aspect ratio not kept)" in note


def test_the_start_line_says_what_imagefolder_did(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NASPLUG_QUIET", "0")
    grey = _folder(tmp_path / "grey", [(6, 6)], "L", ".png")
    found = nasplug.search(
        "dense", "sparsemax", data="imagefolder", data_opts={"path": str(grey), "size": 4}, **SEARCH
    )
    err = capsys.readouterr().err
    assert "nasplug: imagefolder: 8 images (6x6, mode L) -> 3x4x4: resized, grey" in err
    # The statistics the trainer computed for the streamed images prepare new ones.
    norm = found.normalisation
    assert norm is not None and norm.input_shape == (3, 4, 4) and len(norm.mean) == 3


@pytest.mark.parametrize("side", [1, 2, 3])
def test_the_cell_space_refuses_images_it_would_halve_into_padding(side):
    x = np.random.default_rng(0).normal(size=(32, 1, side, side)).astype(np.float32)
    y = np.arange(32) % 2
    with pytest.raises(OptionError) as info:
        nasplug.search(
            "cell", data=(x, y), space_opts={"channels": 4, "layers": 3}, quiet=True, **SEARCH
        )
    message = str(info.value)
    assert "\n" not in message
    assert f"images of {side}x{side} pixels are too small for the cell space" in message
    assert "accepted: images of at least 4x4 pixels" in message


def _shifts(side: int, mode: str = "no-flip") -> set[int]:
    """How far the random crop moves pixels of ``side`` x ``side`` training images."""
    n = 32
    rows = torch.arange(side).view(side, 1)
    cols = torch.arange(side).view(1, side)
    # Every pixel says where it came from: 10000 * image + 100 * row + column + 1 (padding is 0).
    x = (10000 * torch.arange(n).view(n, 1, 1, 1) + 100 * rows + cols + 1).float()
    y = torch.arange(n) % 2
    trainer = Trainer(
        Data(Task("classification", (1, side, side), 2), (x, y), (x, y)),
        device="cpu",
        quiet=True,
        augment=mode,
    )
    moved = set()
    for xb, _ in trainer.batches("train", n):
        for img in xb[:, 0]:
            kept = img > 0
            was = img[kept].long() % 10000 - 1
            now_r, now_c = kept.nonzero(as_tuple=True)
            moved |= set((now_r - was // 100).abs().tolist()) | set(
                (now_c - was % 100).abs().tolist()
            )
    return moved


@pytest.mark.parametrize("side, shifts", [(4, {0}), (8, {0, 1}), (16, {0, 1, 2})])
def test_the_crop_padding_scales_with_the_image(side, shifts):
    assert augment.crop_pad(side, side) == max(shifts)
    assert _shifts(side) == shifts


def test_a_dataset_chooses_its_augmentation_unless_the_user_does():
    x = np.random.default_rng(0).normal(size=(32, 1, 8, 8)).astype(np.float32)
    y = np.arange(32) % 2
    data = dataclasses.replace(nasplug.engine.userdata.to_data((x, y)), augment="no-flip")
    tiny = {"space_opts": {"channels": 4, "layers": 1}, "quiet": True, **SEARCH}
    assert nasplug.search("cell", data=data, **tiny).config["augment"] == "no-flip"
    assert (
        nasplug.search("cell", data=data, augment="standard", **tiny).config["augment"]
        == "standard"
    )
    plain = nasplug.engine.userdata.to_data((x, y))
    assert nasplug.search("cell", data=plain, **tiny).config["augment"] == "standard"


def test_a_dataset_declaring_an_unknown_augmentation_is_refused():
    x = np.random.default_rng(0).normal(size=(32, 1, 8, 8)).astype(np.float32)
    data = dataclasses.replace(
        nasplug.engine.userdata.to_data((x, np.arange(32) % 2)), augment="sideways"
    )
    with pytest.raises(
        OptionError, match="declares augment='sideways'; accepted: standard, no-flip"
    ):
        nasplug.search("cell", data=data, quiet=True, **SEARCH)
    with pytest.raises(ValueError, match="sideways"):
        Trainer(data, device="cpu", quiet=True)
