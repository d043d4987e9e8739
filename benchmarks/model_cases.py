"""Benchmark cases that run models: start-up of the command line, feature extraction, head training.

Each returns our time, the baseline's time (same process, same inputs), their ratio and whether the
two agree, so a fast wrong answer fails.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.timing import best_of, matmul_rate, sync


def cli_help() -> dict:
    """`probe --help` wall time against `python -c pass`: the CLI must not import torch."""

    def run(code: str) -> Callable[[], object]:
        return lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

    ours = best_of(run("import sys; from probe.cli import main; sys.argv=['probe','--help']; main(['--help'])"), 7)
    base = best_of(run("pass"), 7)
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys; from probe.cli import main; main(['--help']); "
         "print(sorted(m for m in ('torch','timm','transformers','numpy','pandas') if m in sys.modules))"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return {"case": "cli_help", "ours_s": ours, "baseline_s": base, "ratio": ours / base,
            "agree": heavy == "[]", "note": f"best of 7, +{(ours - base) * 1000:.0f} ms; heavy modules imported: {heavy}"}


def extraction(model: str = "efficientnet/lite0-in1k", split: str = "train", batch_size: int = 32,
               workers: int = 2, device: str | None = None, rounds: int = 3) -> dict:
    """End-to-end `extract` (draw, decode, preprocess in workers, encode, cache write) against the
    encoder's pure forward on the same images preloaded as tensors, same batch size."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from probe.data import get_dataset
    from probe.encoders import load_encoder
    from probe.features import ExtractOptions, split_features
    from probe.registry import Registry

    spec = Registry.load().get(model)
    data = get_dataset("shapes").load(split)
    encoder = load_encoder(spec, device=device)
    transform = encoder.transform()
    tensors = torch.stack([transform(ref.load()) for ref in data.images])
    encoder.encode(tensors[:batch_size])  # warm-up (allocator, cuDNN autotune)

    def forward() -> np.ndarray:
        return np.concatenate([encoder.encode(tensors[i:i + batch_size]) for i in range(0, len(tensors), batch_size)])

    reference = forward()
    base_times, timings, result = [], [], None
    for _ in range(rounds):  # interleaved, so a noisy neighbour slows both sides alike
        base_times.append(best_of(forward, 1))
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = split_features(spec, data, ExtractOptions(cache_dir=Path(tmp), batch_size=batch_size,
                                                               workers=workers, progress=False), encoder=encoder)
            timings.append(time.perf_counter() - start)
    base = min(base_times)
    ours = min(timings)
    assert result is not None
    agree = bool(np.allclose(result.features, reference, atol=1e-4 if encoder.device == "cpu" else 5e-2))
    n = len(data.images)
    return {"case": f"extraction[{model},{encoder.device}]", "ours_s": ours, "baseline_s": base,
            "ratio": base / ours, "agree": agree, "device": encoder.device,
            "note": f"{n / ours:.1f} img/s end to end vs {n / base:.1f} img/s pure forward "
                    f"= {100 * base / ours:.0f}% (target >= 95%); batch {batch_size}, workers {workers}"}


def _plain_training_loop(images, texts, owner, order, cfg, steps: int, batch: int):
    """The same optimisation written out by hand: heads, loss, AdamW, warmup + cosine, no framework."""
    import math

    import torch

    from probe.align.heads import heads_for
    from probe.align.losses import loss_for

    torch.manual_seed(cfg.seed)
    vision, text = (head.to(images.device) for head in heads_for(cfg, images.shape[1], texts.shape[1]))
    loss_fn = loss_for(cfg).to(images.device)
    params = [*vision.parameters(), *text.parameters(), *loss_fn.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        rows = order[step * batch:(step + 1) * batch]
        img = owner[rows]
        a = torch.nn.functional.normalize(vision(images[img]), dim=-1)
        b = torch.nn.functional.normalize(text(texts[rows]), dim=-1)
        loss = loss_fn(a, b, img[:, None] == img[None, :])
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(str(images.device))
    return vision


def _step_flops(head: str, batch: int, dv: int, dt: int, out: int, width: int) -> float:
    """Matmul FLOPs of one step: every layer's forward, weight gradient and input gradient (the
    input gradient is needed because the LayerNorm in front has learnable parameters), and the
    [batch, batch] logits (forward, and gradients for both sides)."""
    if head == "linear":
        heads = 6 * batch * out * (dv + dt)
    else:  # star: f1 and f2 (d -> width * d) and g (width * d -> out)
        heads = sum(6 * batch * (2 * d * width * d + width * d * out) for d in (dv, dt))
    return heads + 6 * batch * batch * out


def training(dv: int = 1280, dt: int = 384, out: int = 512, device: str | None = None) -> list[dict]:
    """Head training throughput (samples/s) against a hand-written loop on the same batches, and
    as a fraction of the device's matmul rate. Linear heads at batch 4096, star heads at 1024, and
    on a GPU also linear heads at batch 32,768 on 1,024-d features. On the GPU when there is one
    (as ``probe run`` trains), else the CPU."""
    import numpy as np
    import torch

    from probe.align.config import ProbeConfig
    from probe.align.train import AlignmentProbe, fit_grid
    from probe.encoders.base import pick_device
    from probe.features.paired import PairedFeatures

    device = pick_device(device)
    rate = matmul_rate(device=device)
    results = []
    grid = [("linear", "siglip", 4096, 4, dv, dt), ("linear", "infonce", 4096, 4, dv, dt),
            ("star", "siglip", 1024, 2, dv, dt), ("star", "infonce", 1024, 2, dv, dt)]
    if device.startswith("cuda"):  # SAIL's scale: batch 32,768 of 1,024-d features on both sides
        grid += [("linear", "siglip", 32768, 8, 1024, 1024), ("linear", "infonce", 32768, 8, 1024, 1024)]
    for head, loss, batch, steps, dv, dt in grid:
        rng = np.random.default_rng(0)
        n = batch * steps
        feats = PairedFeatures(rng.normal(size=(n // 2, dv)).astype(np.float32),
                               rng.normal(size=(n, dt)).astype(np.float32), np.repeat(np.arange(n // 2), 2))
        cfg = ProbeConfig(head=head, loss=loss, batch_size=batch, epochs=1, warmup=0.0, weight_decay=0.0,
                          out_dim=out, seed=0)
        order = torch.as_tensor(feats.usable_pairs()[np.random.default_rng(cfg.seed).permutation(n)], device=device)
        owner = torch.as_tensor(feats.caption_image, device=device)
        ours_times, base_times = [], []
        for _ in range(3):  # interleaved; the first round also warms the allocator for both sides
            probe = AlignmentProbe(cfg)
            start = time.perf_counter()
            fit_grid([probe], feats, device=device)
            sync(device)
            ours_times.append(time.perf_counter() - start)
            start = time.perf_counter()  # both sides start from host arrays: the copy is part of the work
            images = torch.as_tensor(feats.images, device=device)
            texts = torch.as_tensor(feats.texts, device=device)
            plain = _plain_training_loop(images, texts, owner, order, cfg, steps, batch)
            base_times.append(time.perf_counter() - start)
        ours, base = min(ours_times), min(base_times)
        # Compared as functions: Adam moves every weight by about lr whatever its gradient's size,
        # so weights with near-zero gradients differ by float noise in the gradient's sign.
        with torch.no_grad():
            plain.eval()
            x = images[:512]
            gap = float((torch.nn.functional.normalize(probe.vision_head_(x), dim=-1)
                         - torch.nn.functional.normalize(plain(x), dim=-1)).abs().max())
        agree = gap < (1e-4 if device == "cpu" else 1e-3)  # accelerators reduce in other orders
        flops = steps * _step_flops(head, batch, dv, dt, out, cfg.star_width)
        results.append({
            "case": f"training[{head},{loss},batch{batch},d{dv}x{dt},{device}]", "ours_s": ours, "baseline_s": base,
            "ratio": base / ours, "agree": bool(agree), "samples_per_s": n / ours, "device": device,
            "floor_s": flops / rate, "matmul_gflops": rate / 1e9,
            "note": f"{n / ours:,.0f} samples/s; {100 * flops / rate / ours:.0f}% of the {rate / 1e9:.0f} GFLOP/s "
                    f"matmul rate (target >= 80% for linear); plain loop {n / base:,.0f} samples/s; "
                    f"embeddings differ by <= {gap:.1e}"})
    return results


def _cpu_encoder(name: str, case: str, images: int, out: list[dict]) -> tuple[Any, Any, Any]:
    """``(spec, encoder, seeded uint8 images)`` on the CPU; the encoder is None, with a skipped row in
    ``out``, when its weights are not installed here (the run goes on and says so)."""
    import torch

    from probe.encoders import load_encoder
    from probe.registry import Registry

    spec = Registry.load().get(name)
    pixels = torch.randint(0, 256, (images, 3, spec.image_size, spec.image_size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    try:
        return spec, load_encoder(spec, device="cpu"), pixels
    except Exception as exc:
        out.append({"case": f"{case}[{name}]", "ours_s": 0.0, "baseline_s": 0.0, "ratio": 1.0, "agree": True,
                    "note": f"skipped: {exc}"})
        return spec, None, pixels


def cpu_batch(models: tuple[str, ...] = ("efficientnet/lite0-in1k", "sscd/resnet50-disc-mixup.onnx-int8"),
              images: int = 96) -> list[dict]:
    """Forward time per image at the family's CPU batch (probe's default) against the other choice (64
    for torch models, the old default; 16 for onnxruntime), same images; features must agree. torch
    models pay page faults for 32+ image batches of large activations on a CPU; onnxruntime keeps an
    arena and prefers large batches."""
    import numpy as np

    from probe.encoders.families import family_of

    out = []
    for name in models:
        spec, encoder, pixels = _cpu_encoder(name, "cpu_batch", images, out)
        if encoder is None:
            continue
        ours_batch = family_of(spec).cpu_batch_size
        other = 16 if ours_batch >= 32 else 64

        def run(batch: int, encoder=encoder, pixels=pixels) -> np.ndarray:
            return np.concatenate([encoder.encode(pixels[i:i + batch]) for i in range(0, images, batch)])

        ours_features, base_features = run(ours_batch), run(other)  # warm both
        ours = best_of(lambda b=ours_batch, run=run: run(b), 2)
        base = best_of(lambda b=other, run=run: run(b), 2)
        agree = bool(np.allclose(ours_features, base_features, rtol=1e-3, atol=1e-3))
        out.append({"case": f"cpu_batch[{name}]", "ours_s": ours, "baseline_s": base, "ratio": base / ours,
                    "agree": agree, "note": f"{images} images, batch {ours_batch} vs {other}: "
                                            f"{1000 * ours / images:.1f} vs {1000 * base / images:.1f} ms/image"})
    return out


def channels_last(models: tuple[str, ...] = ("efficientnet/lite0-in1k", "efficientnet/lite2-in1k",
                                            "baseline/random-vit-s16"), images: int = 48) -> list[dict]:
    """Forward time per image of timm encoders as probe runs them (weights and inputs channels-last)
    against the same network in torch's default contiguous layout, same images; features must agree."""
    import numpy as np
    import torch

    from probe.features.options import ExtractOptions, extraction_batch_size

    out = []
    for name in models:
        spec, encoder, pixels = _cpu_encoder(name, "channels_last", images, out)
        if encoder is None:
            continue
        batch = extraction_batch_size(spec, ExtractOptions(device="cpu"))
        model = encoder.model

        def ours(encoder=encoder, pixels=pixels, batch=batch) -> np.ndarray:
            return np.concatenate([encoder.encode(pixels[i:i + batch]) for i in range(0, images, batch)])

        def contiguous(encoder=encoder, pixels=pixels, batch=batch, model=model, spec=spec) -> np.ndarray:
            from probe.encoders.pooling import pool_vision_tokens

            parts = []
            with torch.inference_mode():
                for i in range(0, images, batch):
                    feats = model.forward_features(encoder.pixels(pixels[i:i + batch]))  # torch's default layout
                    pooled = (model.forward_head(feats, pre_logits=True) if spec.pooling == "pooler"
                              else pool_vision_tokens(feats, spec.pooling, encoder.prefix_tokens))
                    parts.append(pooled.float().numpy())
            return np.concatenate(parts)

        ours_features = ours()
        ours_s = best_of(ours, 2)
        model.to(memory_format=torch.contiguous_format)
        base_features = contiguous()
        base_s = best_of(contiguous, 2)
        agree = bool(np.allclose(ours_features, base_features, rtol=1e-4, atol=1e-4))
        out.append({"case": f"channels_last[{name}]", "ours_s": ours_s, "baseline_s": base_s, "ratio": base_s / ours_s,
                    "agree": agree, "note": f"{images} images at batch {batch}: {1000 * ours_s / images:.1f} vs "
                                            f"{1000 * base_s / images:.1f} ms/image (channels-last vs contiguous)"})
    return out


def _camera_jpegs(n: int, side: tuple[int, int] = (400, 300)) -> list[bytes]:
    """``n`` distinct JPEGs (quality 90) of smooth gradients with noise: a photo's decoding cost,
    unlike a flat image's."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = side
    pool = []
    for i in range(n):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (i + 1) % 256), (yy * 3 + i) % 256, ((xx + yy) // 2 + 7 * i) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 12, size=base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
        pool.append(buf.getvalue())
    return pool


def jpeg_decode(models: tuple[str, ...] = ("baseline/random-vit-s16", "efficientnet/lite0-in1k",
                                           "efficientnet/lite2-in1k"),
                sides: tuple[tuple[int, int], ...] = ((400, 300), (1024, 768)), images: int = 64) -> list[dict]:
    """What one data-loader worker spends per image: a JPEG's bytes to the uint8 crop an encoder
    takes, by torchvision (probe's decoder) against PIL's decode and resize (the former one), one
    thread, same bytes; the pixels must agree within 2 of 255 levels."""
    import io

    import torch

    from probe.data.images import open_rgb
    from probe.encoders.preprocess import SpecTransform
    from probe.registry import Registry

    registry = Registry.load()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    out = []
    try:
        for side in sides:
            pool = _camera_jpegs(images, side)
            for name in models:
                transform = SpecTransform(registry.get(name))

                def ours(transform=transform, pool=pool) -> list:
                    return [transform.from_bytes(data, "x.jpg") for data in pool]

                def pil(transform=transform, pool=pool) -> list:
                    return [transform(open_rgb(io.BytesIO(data), "x.jpg")) for data in pool]

                ours_s, base_s = best_of(ours, 3), best_of(pil, 3)
                worst = max(int((a.int() - b.int()).abs().max()) for a, b in zip(ours(), pil(), strict=True))
                out.append({"case": f"jpeg_decode[{name} {side[0]}x{side[1]}]", "ours_s": ours_s,
                            "baseline_s": base_s, "ratio": base_s / ours_s, "agree": worst <= 2,
                            "note": f"{images} JPEGs to {transform.size}px crops: {1000 * ours_s / images:.2f} vs "
                                    f"{1000 * base_s / images:.2f} ms/image (torchvision vs PIL), pixels within "
                                    f"{worst} level(s)"})
    finally:
        torch.set_num_threads(threads)
    return out


def _write_shards(root, n_shards: int, per_shard: int, side: tuple[int, int] = (400, 300)) -> None:
    """``n_shards`` webdataset shards of ``per_shard`` JPEG + caption samples at camera-like size.

    The JPEGs are smooth gradients with noise (decoding cost like a photo's, unlike a flat image);
    a pool of distinct images is cycled, since decoding time does not depend on which image it is.
    """
    import io
    import tarfile

    pool = _camera_jpegs(min(per_shard, 256), side)
    for s in range(n_shards):
        with tarfile.open(root / f"shard-{s:05d}.tar", "w") as tar:
            for j in range(per_shard):
                key = f"{s:05d}{j:05d}"
                for ext, payload in (("jpg", pool[(s * per_shard + j) % len(pool)]),
                                     ("txt", f"picture {key} of a gradient".encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))


def _offset_reads(spec, data, encoder, cache, batch_size: int, workers: int, device: str):
    """The same extraction with each image read by its offset in its shard (the reader used where
    a split's images are not whole shards): ``(seconds, features)``."""
    from unittest import mock

    from probe.features import ExtractOptions, split_features

    start = time.perf_counter()
    with mock.patch("probe.features.shards.shard_ranges", lambda refs: None):
        result = split_features(spec, data, ExtractOptions(cache_dir=cache, batch_size=batch_size, workers=workers,
                                                           progress=False, device=device), encoder=encoder)
    return time.perf_counter() - start, result


def _loader_alone(encoder, data, batch_size: int, workers: int, decode: str = "workers") -> float:
    """Images per second the data path alone delivers to the encoder's device, the encoder left out:
    every shard streamed, decoded (by the workers, or on the device) and copied over in batches. Set
    beside the pure forward, it says which of the two bounds extraction."""
    from probe.features.shards import shard_loader, shard_ranges

    device = str(encoder.device)
    ranges = shard_ranges(data.images)
    assert ranges is not None
    start, n = time.perf_counter(), 0
    loader, finish = shard_loader(encoder, data.images, list(range(len(ranges))), ranges, batch_size, workers, decode)
    for ids, tensor, _bad in loader:
        if finish is not None:
            ids, tensor, _more = finish(ids, tensor, device)
        elif tensor is not None:
            tensor.to(device, non_blocking=True)
        n += len(ids)
    sync(device)
    assert n == len(data.images)
    return n / (time.perf_counter() - start)


def shard_extraction(models: tuple[str, ...] | None = None, n_shards: int | None = None,
                     per_shard: int | None = None, batch_size: int | None = None,
                     workers: int | None = None, forward_images: int = 2048) -> list[dict]:
    """End-to-end extraction from webdataset shards (read by offset, decode and preprocess in
    workers, encode, cache write) against the encoder's pure forward on preloaded tensors at the
    same batch size: the share of the model's speed that the data path keeps (goal >= 90%).

    On a GPU: 20 shards x 500 images through ViT-B/16, ViT-L/16 and ResNet-50 architectures in bf16
    (random weights: speed does not depend on the weights' values). On a CPU: 2 shards x 48 images
    through the random ViT-S/16 control, so the case runs anywhere. The data path alone (the same
    loader without the encoder) is timed too: beside the pure forward it says which bounds extraction.
    """
    import dataclasses
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from probe.data import get_dataset
    from probe.encoders import load_encoder
    from probe.encoders.base import pick_device
    from probe.features import ExtractOptions, split_features
    from probe.features.options import resolved_workers
    from probe.registry import Registry

    device = pick_device(None)
    on_gpu = device.startswith("cuda")
    archs = {"vit-b16": ("vit_base_patch16_224", 768), "vit-l16": ("vit_large_patch16_224", 1024),
             "resnet50": ("resnet50", 2048), "vit-s16": ("vit_small_patch16_224", 384)}
    models = models or (("vit-b16", "vit-l16", "resnet50") if on_gpu else ("vit-s16",))
    n_shards = n_shards or (20 if on_gpu else 2)
    per_shard = per_shard or (500 if on_gpu else 48)
    batch_size = batch_size or (256 if on_gpu else 16)
    workers = resolved_workers(workers, device)  # probe's default for the device, unless given
    template = Registry.load().get("baseline/random-vit-s16")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        shards.mkdir()
        _write_shards(shards, n_shards, per_shard)
        data = get_dataset(f"wds:{shards}").load("train")
        n = len(data.images)
        for name in models:
            arch, dim = archs[name]
            pooling = "cls" if arch.startswith("vit") else "pooler"
            spec = dataclasses.replace(template, name=f"bench/random-{name}", arch=arch, embed_dim=dim,
                                       pooling=pooling)
            encoder = load_encoder(spec, device=device)
            transform = encoder.transform()
            head = min(forward_images, n)
            tensors = torch.stack([transform.from_ref(ref) for ref in data.images[:head]])  # decoded as extraction does
            encoder.encode(tensors[:batch_size])  # warm-up: allocator, cuDNN autotune

            def forward(encoder=encoder, tensors=tensors) -> np.ndarray:
                return np.concatenate([encoder.encode(tensors[i:i + batch_size])
                                       for i in range(0, len(tensors), batch_size)])

            reference = forward()
            base_per_image, ours_times, result = [], [], None
            for round_ in range(2):  # interleaved, so a noisy neighbour slows both sides alike
                base_per_image.append(best_of(forward, 1) / head)
                cache = Path(tmp) / f"cache-{name}-{round_}"
                start = time.perf_counter()
                result = split_features(spec, data, ExtractOptions(cache_dir=cache, batch_size=batch_size,
                                                                   workers=workers, progress=False, device=device),
                                        encoder=encoder)
                ours_times.append(time.perf_counter() - start)
            assert result is not None
            ours, base = min(ours_times), min(base_per_image) * n
            streamed = result.dense(n)
            agree = bool(np.allclose(streamed[:head], reference, atol=1e-4 if not on_gpu else 5e-2))
            offset_s, by_offset = _offset_reads(spec, data, encoder, Path(tmp) / f"cache-{name}-offsets",
                                                batch_size, workers, device)
            agree = agree and bool(np.allclose(by_offset.dense(n), streamed, atol=1e-4 if not on_gpu else 5e-2))
            precision = "bf16" if on_gpu else "float32"
            loader = _loader_alone(encoder, data, batch_size, workers)
            out.append({"case": f"shard_extraction[{name},{device}]", "ours_s": ours, "baseline_s": base,
                        "ratio": base / ours, "agree": agree, "device": device, "images_per_s": n / ours,
                        "offset_reads_images_per_s": n / offset_s,
                        "forward_images_per_s": n / base, "loader_images_per_s": loader,
                        "note": f"{n_shards} shards x {per_shard} JPEGs 400x300: {n / ours:,.0f} img/s end to end vs "
                                f"{n / base:,.0f} img/s pure forward = {100 * base / ours:.0f}% (goal >= 90%); "
                                f"{precision}, batch {batch_size}, {workers} workers; the data path alone (no "
                                f"encoder): {loader:,.0f} img/s; each image read by its "
                                f"offset instead of streaming the shards: {n / offset_s:,.0f} img/s "
                                f"(streamed {offset_s / ours:.2f}x as fast)"})
            if on_gpu:  # JPEGs decoded on the GPU (nvjpeg), the workers only reading bytes
                start = time.perf_counter()
                on_device = split_features(spec, data, ExtractOptions(
                    cache_dir=Path(tmp) / f"cache-{name}-device-decode", batch_size=batch_size, workers=workers,
                    progress=False, device=device, decode="device"), encoder=encoder)
                device_s = time.perf_counter() - start
                device_loader = _loader_alone(encoder, data, batch_size, workers, decode="device")
                out.append({"case": f"shard_extraction[{name},{device},decode=device]", "ours_s": device_s,
                            "baseline_s": base, "ratio": base / device_s, "device": device, "images_per_s": n / device_s,
                            "loader_images_per_s": device_loader,
                            "agree": bool(np.allclose(on_device.dense(n), streamed, atol=5e-2)),
                            "note": f"--decode device: {n / device_s:,.0f} img/s end to end vs {n / base:,.0f} img/s "
                                    f"pure forward = {100 * base / device_s:.0f}% (goal >= 90%); workers decoding: "
                                    f"{100 * base / ours:.0f}%; the data path alone (no encoder): "
                                    f"{device_loader:,.0f} img/s"})
            del encoder, tensors
            if on_gpu:
                torch.cuda.empty_cache()
    return out


def layers(model: str = "baseline/random-vit-s16", split: str = "val", workers: int = 2) -> dict:
    """`--layers all` on the demo's images: every block read in one forward pass and split into each
    layer's entry, against each layer read by its own pass (the baseline), and against one layer (the
    price of asking for all). Equal answers: each layer's entry equals the one its own pass writes."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from probe.data import get_dataset
    from probe.encoders import load_encoder
    from probe.encoders.layers import encoder_layers
    from probe.features import ExtractOptions, split_features
    from probe.features.layers import extract_layers
    from probe.registry import Registry

    spec = Registry.load().get(model)
    data = get_dataset("shapes").load(split)
    variants = [spec.at_layer(k, w) for k, w in encoder_layers(load_encoder(spec, device="cpu"))]

    def disk(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("features.npy"))

    with tempfile.TemporaryDirectory() as tmp:
        together, apart, one = (ExtractOptions(cache_dir=Path(tmp) / name, workers=workers, progress=False)
                                for name in ("together", "apart", "one"))
        start = time.perf_counter()
        extract_layers(variants, data, together)
        ours = time.perf_counter() - start
        start = time.perf_counter()
        for variant in variants:
            split_features(variant, data, apart)
        base = time.perf_counter() - start
        start = time.perf_counter()
        split_features(variants[-1], data, one)
        single = time.perf_counter() - start
        agree = all(np.allclose(np.asarray(split_features(v, data, together).features),
                                np.asarray(split_features(v, data, apart).features), atol=1e-5) for v in variants)
        bytes_all, bytes_one = disk(Path(tmp) / "together"), disk(Path(tmp) / "one")
    n = data.n_images
    return {"case": f"layers[{model},{len(variants)} layers,{n} images]", "ours_s": ours, "baseline_s": base,
            "ratio": base / ours, "agree": bool(agree),
            "note": f"all {len(variants)} layers in one pass {ours:.1f} s vs one pass per layer {base:.1f} s; "
                    f"{ours / single:.2f}x the time and {bytes_all / bytes_one:.0f}x the disk of one layer "
                    f"({bytes_all / 1e6:.1f} MB vs {bytes_one / 1e6:.2f} MB)"}
