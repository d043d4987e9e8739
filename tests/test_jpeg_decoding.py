"""JPEGs read from files and shards are decoded by torchvision: within 2 of 255 levels of PIL's
pixels per channel, and whatever torchvision does not take (CMYK, a file cut short, another
format behind a .jpg name) goes through PIL exactly as before."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _transform(name: str):
    from probe.encoders.preprocess import SpecTransform
    from probe.registry import Registry

    return SpecTransform(Registry.load().get(name))


def _photos(n: int = 10) -> list:
    """Camera-like PIL images: shapes scenes at 400x300 (one portrait) with noise, as JPEG costs them."""
    from PIL import Image

    from probe.data import get_dataset

    rng = np.random.default_rng(0)
    out = []
    for i, ref in enumerate(get_dataset("shapes").load("test").images[:n]):
        size = (300, 400) if i == 0 else (400, 300)
        pixels = np.asarray(ref.load().resize(size), dtype=np.int16) + rng.integers(-20, 21, (size[1], size[0], 3))
        out.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return out


def _encoded(image, fmt: str = "JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("model", ["baseline/random-vit-s16", "efficientnet/lite0-in1k"])
def test_jpegs_decode_within_two_levels_of_pil(model):
    from probe.data.images import open_rgb

    transform = _transform(model)
    images = _photos()
    images.append(images[1].convert("L"))  # greyscale: three equal channels, as PIL's convert gives
    for image in images:
        data = _encoded(image, quality=90)
        ours = transform.jpeg(data)
        assert ours is not None and ours.dtype == torch.uint8 and ours.shape == (3, transform.size, transform.size)
        pil = transform(open_rgb(io.BytesIO(data)))
        diff = (ours.int() - pil.int()).abs()
        assert diff.max() <= 2 and diff.float().mean() < 0.05, (diff.max(), diff.float().mean())
        assert torch.equal(transform.from_bytes(data, "x.JPG"), ours)  # the suffix decides, in any case


def test_what_torchvision_does_not_take_goes_through_pil(tmp_path):
    from probe.data.base import FileImage
    from probe.data.images import open_rgb

    transform = _transform("baseline/random-vit-s16")
    photo = _photos(2)[1]
    cmyk = _encoded(photo.convert("CMYK"), quality=90)
    png = _encoded(photo, "PNG")
    whole = _encoded(photo, quality=90)
    for data in (cmyk, png):
        assert transform.jpeg(data) is None
        assert torch.equal(transform.from_bytes(data, "x.jpg"), transform(open_rgb(io.BytesIO(data))))
    cut = whole[: len(whole) // 2]  # no end marker: PIL's verdict (truncated) stands
    assert transform.jpeg(cut) is None
    with pytest.raises(OSError):
        transform.from_bytes(cut, "x.jpg")
    # a .png name is PIL's even when the bytes are a JPEG; a file is read like a shard member
    assert torch.equal(transform.from_bytes(whole, "x.png"), transform(open_rgb(io.BytesIO(whole))))
    path = tmp_path / "photo.jpeg"
    path.write_bytes(whole)
    assert torch.equal(transform.from_ref(FileImage(str(path))), transform.jpeg(whole))
    with pytest.raises(OSError):
        transform.from_ref(FileImage(str(tmp_path / "missing.jpg")))


def test_extraction_workers_decode_jpeg_files_through_torchvision(tmp_path):
    """Features extracted by DataLoader workers are those of torchvision's pixels (PIL's differ by
    up to 2 levels, more than this tolerance lets through)."""
    from probe.data.base import FileImage
    from probe.encoders import load_encoder
    from probe.features.batches import encode_inputs
    from probe.registry import Registry

    paths = []
    for i, image in enumerate(_photos(4)):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(_encoded(image, quality=90))
        paths.append(path)
    encoder = load_encoder(Registry.load().get("baseline/random-vit-s16"), device="cpu")
    extracted = encode_inputs(encoder, [FileImage(str(p)) for p in paths], batch_size=2, workers=1)
    transform = encoder.transform()
    direct = encoder.encode(torch.stack([transform.jpeg(p.read_bytes()) for p in paths]))
    np.testing.assert_allclose(extracted, direct, rtol=1e-5, atol=1e-5)


def test_decoding_on_the_device_gives_the_workers_features_and_lists_the_same_bad_images(run_cli, tmp_path):
    """``--decode device`` on a CPU: JPEGs batch-decoded in the main process, a CMYK JPEG and a PNG
    decoded by the workers, a cut-short JPEG (end marker restored) failed by both decoders and listed;
    the features equal the workers' bit for bit."""
    folder = tmp_path / "imgs" / "train" / "thing"
    folder.mkdir(parents=True)
    photos = _photos(5)
    for i, photo in enumerate(photos[:3]):
        (folder / f"{i}.jpg").write_bytes(_encoded(photo, quality=90))
    (folder / "3.png").write_bytes(_encoded(photos[3], "PNG"))
    (folder / "4.jpg").write_bytes(_encoded(photos[4].convert("CMYK"), quality=90))
    whole = _encoded(photos[0], quality=90)
    (folder / "5.jpg").write_bytes(whole[:600] + whole[-2:])
    entries = {}
    for decode in ("workers", "device"):
        cache = tmp_path / decode
        result = run_cli("extract", "-m", "test/tiny-vit", "-d", f"imagefolder:{tmp_path / 'imgs'}", "--cache-dir",
                         str(cache), "--workers", "1", "--batch-size", "4", "--decode", decode)
        assert result.returncode == 0, result.stderr
        assert "1 bad image(s) skipped" in result.stdout
        meta_path = next(cache.rglob("meta.json"))
        meta = json.loads(meta_path.read_text())
        entries[decode] = (meta, np.load(meta_path.parent / "features.npy"))
    (meta_w, feats_w), (meta_d, feats_d) = entries["workers"], entries["device"]
    assert meta_w["skipped"] == meta_d["skipped"] and "5.jpg" in meta_w["skipped"][0]["input"]
    assert meta_w["key"] == meta_d["key"]  # on a CPU both decode with libjpeg-turbo: one cache entry serves both
    assert feats_w.shape == (5, 64) and np.array_equal(feats_w, feats_d)


def test_device_decoding_resizes_each_size_as_a_batch_with_each_images_own_pixels():
    """A batch of two sizes (landscape and portrait, several of each) decoded by ``finish`` gives the
    pixels each JPEG gets decoded and resized alone, in the batch's order."""
    from probe.encoders.preprocess import DeviceDecoding

    transform = DeviceDecoding.of(_transform("baseline/random-vit-s16"))
    photos = _photos(6)
    blobs = [_encoded(p if i % 2 else p.transpose(0), quality=90) for i, p in enumerate(photos)]  # 0, 2, 4 portrait
    items = [transform.from_bytes(b, f"{i}.jpg") for i, b in enumerate(blobs)]
    assert all(isinstance(item, tuple) for item in items)  # bytes, for the device to decode
    kept, batch, bad = transform.finish(list(range(10, 16)), items, "cpu")
    assert kept == list(range(10, 16)) and not bad
    alone = torch.stack([transform.jpeg(b) for b in blobs])
    assert torch.equal(batch, alone)
