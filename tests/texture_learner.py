"""A second real learner for the tests, unlike the digits: patches of real photographs.

The two photos that ship with scikit-learn (a pagoda in the Summer Palace, a dahlia) are cut
into 64x64 patches, labelled by the part of the photo they come from: the pagoda's roofs and
galleries, the dahlia's petals, the blurred leaves behind it. No download: the photos are in
the scikit-learn wheel, and the network is trained from scratch on them (three labels, a few
hundred patches) during the test run, then exported like a team's `export.pkl`.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image

from inference.demo_model import TrainResult, folder_learner_train

PATCH = 64
#: label: (photo, box (left, top, right, bottom) the patches are cut from)
REGIONS: dict[str, tuple[str, list[tuple[int, int, int, int]]]] = {
    "pagoda": ("china.jpg", [(95, 130, 330, 330)]),
    "petals": ("flower.jpg", [(205, 120, 405, 320)]),
    "leaves": ("flower.jpg", [(0, 0, 160, 427), (475, 0, 640, 330)]),
}
TEXTURE_LABELS = sorted(REGIONS)


def sample_photo(name: str) -> Image.Image:
    """One of scikit-learn's bundled photos (china.jpg, flower.jpg), 640x427 RGB."""
    import sklearn

    return Image.open(Path(sklearn.__file__).parent / "datasets" / "images" / name).convert("RGB")


def patch_cut(photo: Image.Image, box: tuple[int, int, int, int], *,
              rng: random.Random) -> Image.Image:
    """A square of 48 to 96 px from within `box`, scaled to PATCH x PATCH."""
    left, top, right, bottom = box
    side = rng.randint(48, min(96, right - left, bottom - top))
    x, y = rng.randint(left, right - side), rng.randint(top, bottom - side)
    return photo.crop((x, y, x + side, y + side)).resize((PATCH, PATCH),
                                                         Image.Resampling.BILINEAR)


def patches_write(root: Path, *, per_label: int = 120, seed: int = 0) -> dict[str, list[Path]]:
    """Write `per_label` patches of each label as PNG files under
    root/{train,valid,test}/<label>/ (60/20/20 split)."""
    rng = random.Random(seed)
    photos = {name: sample_photo(name) for name in {name for name, _ in REGIONS.values()}}
    written: dict[str, list[Path]] = {"train": [], "valid": [], "test": []}
    for label in TEXTURE_LABELS:
        name, boxes = REGIONS[label]
        cut1, cut2 = int(per_label * 0.6), int(per_label * 0.8)
        for n in range(per_label):
            split = "train" if n < cut1 else "valid" if n < cut2 else "test"
            path = root / split / label / f"{label}-{n:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            patch_cut(photos[name], boxes[n % len(boxes)], rng=rng).save(path)
            written[split].append(path)
    return written


def texture_model_train(*, data_dir: Path, out: Path, epochs: int = 5,
                        seed: int = 0) -> TrainResult:
    """Cut the patches and train the texture learner on them (a few seconds on a CPU)."""
    files = patches_write(data_dir, seed=seed)
    return folder_learner_train(data_dir=data_dir, out=out, test_files=files["test"],
                                image_size=PATCH, epochs=epochs, seed=seed,
                                channels=(16, 32, 64, 64))
