"""Scores for any image files, without a trained model: `swapbench score fid|kid|lpips|sifid`.

Images are read as clean-fid reads them (RGB uint8, their own size); every problem with the input
is a one-line :class:`UserError` naming the file or folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from swapbench.data.image_io import EXTENSIONS, find_images, read_image
from swapbench.errors import UserError
from swapbench.evaluation.metrics.distances import frechet_distance, kid_subset_values, sifid_pair


def read_folder(folder: Path) -> dict[str, np.ndarray]:
    """Relative path -> uint8 image for every image under ``folder`` (at least 2)."""
    if not folder.is_dir():
        raise UserError(f"folder {folder} does not exist or is not a folder; give a folder of images")
    names = find_images(folder)
    if len(names) < 2:
        raise UserError(f"folder {folder} has {len(names)} image file(s) ({' '.join(EXTENSIONS)}); "
                        f"the score needs at least 2")
    return {name: read_image(folder / name) for name in names}


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)


def pool_features(a: Path, b: Path, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Inception pool features of every image in two folders (both read before any network runs)."""
    from swapbench.evaluation.metrics.inception import InceptionFeatures

    images_a, images_b = list(read_folder(a).values()), list(read_folder(b).values())
    net = InceptionFeatures(device)
    return net.pool_uint8(images_a), net.pool_uint8(images_b)


def fid_folders(a: Path, b: Path, device: str = "cpu") -> dict:
    fa, fb = pool_features(a, b, device)
    return {"metric": "fid", "value": frechet_distance(fa, fb), "n": len(fa), "n_b": len(fb)}


def kid_folders(a: Path, b: Path, device: str = "cpu") -> dict:
    fa, fb = pool_features(a, b, device)
    values = kid_subset_values(fa, fb)
    result = {"metric": "kid", "value": float(np.mean(values)), "n": len(fa), "n_b": len(fb)}
    if max(len(fa), len(fb)) > 1000:  # otherwise every subset is a whole set and the spread is zero
        result["std"] = float(np.std(values))
    return result


def lpips_files(a: Path, b: Path, net: str = "alex", device: str = "cpu") -> dict:
    from swapbench.nn.lpips import MIN_SIDE, build_lpips

    ia, ib = read_image(a), read_image(b)
    if min(ia.shape[:2]) < MIN_SIDE[net]:
        raise UserError(f"{a} is {ia.shape[1]}x{ia.shape[0]}; LPIPS-{net} needs at least {MIN_SIDE[net]} px per side")
    if ia.shape != ib.shape:
        raise UserError(f"{a} is {ia.shape[1]}x{ia.shape[0]} but {b} is {ib.shape[1]}x{ib.shape[0]}; "
                        f"LPIPS compares images of the same size, resize one first")
    with torch.no_grad():
        value = build_lpips(net, device)(_to_tensor(ia).to(device), _to_tensor(ib).to(device)).item()
    return {"metric": f"lpips_{net}", "value": value, "n": 1}


def sifid_folders(a: Path, b: Path, device: str = "cpu") -> dict:
    """Mean SIFID over files paired by relative path (a/x.png with b/x.png)."""
    from swapbench.evaluation.metrics.inception import InceptionFeatures

    images_a, images_b = read_folder(a), read_folder(b)
    only_a, only_b = sorted(set(images_a) - set(images_b)), sorted(set(images_b) - set(images_a))
    if only_a or only_b:
        which, name = (a, only_a[0]) if only_a else (b, only_b[0])
        raise UserError(f"SIFID pairs files by name, but {which / name} has no partner "
                        f"({len(only_a) + len(only_b)} unpaired); give two folders with the same file names")
    for name in images_a:
        if images_a[name].shape != images_b[name].shape:
            (ha, wa), (hb, wb) = images_a[name].shape[:2], images_b[name].shape[:2]
            raise UserError(f"SIFID compares each pair at one size, but {a / name} is {wa}x{ha} and {b / name} is "
                            f"{wb}x{hb}; resize one folder to the other's size")
    net = InceptionFeatures(device, batch_size=1)
    values, samples = [], []
    for name in images_a:
        fa, fb = net.conv4(_to_tensor(images_a[name]))[0], net.conv4(_to_tensor(images_b[name]))[0]
        values.append(sifid_pair(fa, fb))
        samples.append(min(fa.shape[1] * fa.shape[2], fb.shape[1] * fb.shape[2]))
    return {"metric": "sifid", "value": float(np.mean(values)), "n": len(values), "samples_min": min(samples)}


def network_speed(resolution: int = 64, n: int = 32, batch_size: int = 16, repeats: int = 3,
                  device: str = "cpu") -> list[dict]:
    """Seconds per image of each score network on ``n`` real test crops (best of ``repeats`` passes,
    after a warm-up pass), batched as the evaluator batches them."""
    import time

    from swapbench.data.photos import PhotoCrops
    from swapbench.evaluation.metrics.inception import InceptionFeatures
    from swapbench.nn.lpips import build_lpips

    ds = PhotoCrops("test", resolution, test_images=n)
    images = torch.stack([ds[i] for i in range(n)])
    other = images.roll(1, 0)
    inception = InceptionFeatures(device, batch_size=batch_size)
    alex, vgg = build_lpips("alex", device), build_lpips("vgg", device)

    def lpips_all(model):
        with torch.no_grad():
            for i in range(0, n, batch_size):
                model(images[i : i + batch_size].to(device), other[i : i + batch_size].to(device))

    jobs = {
        "inception_pool (clean resize to 299 + forward)": lambda: inception.pool(images),
        f"inception_conv4 ({resolution} px)": lambda: inception.conv4(images),
        f"lpips_alex ({resolution} px pairs)": lambda: lpips_all(alex),
        f"lpips_vgg ({resolution} px pairs)": lambda: lpips_all(vgg),
    }
    rows = []
    for name, job in jobs.items():
        job()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            job()
            times.append(time.perf_counter() - start)
        rows.append({"network": name, "seconds_per_image": min(times) / n, "n": n, "threads": torch.get_num_threads()})
    return rows
