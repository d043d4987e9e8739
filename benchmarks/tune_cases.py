"""``probe tune``'s training step against a plain hand-written loop over the same model.

Both train the same parts of the same encoder with the same heads, optimiser, schedule and batches;
the hand-written loop has its images decoded and stacked before the clock starts, so the ratio is
what probe's loop costs on top (decoding in workers, the FLOP count of the first step, checkpoints
off). Equal final weights are checked.
"""

from __future__ import annotations

import time


def tune_step(vision: str = "baseline/random-vit-s16", parts: str = "patch_embed,cls_token", n_images: int = 96,
              batch: int = 32, epochs: int = 2) -> dict:
    import numpy as np
    import torch

    from probe.align.config import ProbeConfig
    from probe.align.losses import batch_positive_pairs
    from probe.align.train import config_schedule, fresh_heads, head_groups, make_optimiser
    from probe.data import get_dataset
    from probe.encoders import load_encoder
    from probe.features.batches import encode_inputs
    from probe.features.paired import PairedFeatures
    from probe.registry import Registry
    from probe.unfreezing.config import TuneConfig
    from probe.unfreezing.modules import TunedEncoder, module_parts, pooled_spec, tunable
    from probe.unfreezing.parts import apply, parse_parts, resolve
    from probe.unfreezing.train import Side, _encoder_groups, tune_fit

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = get_dataset("shapes").load("train").subset(np.arange(n_images), "train-head")
    registry = Registry.load()
    text_spec = registry.get("test/tiny-bert")

    def side(spec_name: str, selection: str, inputs):
        spec = registry.get(spec_name)
        module = tunable(load_encoder(spec, device="cpu"), "cls")
        features = encode_inputs(TunedEncoder(pooled_spec(spec, module), module, "cpu"), inputs, 16)
        parts_of, _ = module_parts(module)
        chosen = parse_parts(selection, spec.modality)
        trainable = resolve(chosen, parts_of, spec.name, spec.modality)
        apply(module.backbone, trainable)
        return Side(features, module if not chosen.frozen else None, trainable, inputs), module

    cfg = ProbeConfig(head="linear", loss="infonce", epochs=epochs, batch_size=batch, out_dim=256, norm=False)
    tcfg = TuneConfig(encoder_lr=1e-4, checkpoint_every=0)
    ours_vision, ours_module = side(vision, parts, data.images)
    text, _ = side(text_spec.name, "none", data.captions)
    pairs = PairedFeatures(ours_vision.features, text.features, data.caption_image).usable_pairs()
    start = time.perf_counter()
    ours = tune_fit(ours_vision, text, data.caption_image, pairs, cfg, tcfg, "cpu", workers=2, progress=False)
    ours_s = time.perf_counter() - start

    # the baseline: the same model and batches, images decoded and stacked beforehand, a bare loop
    base_vision, base_module = side(vision, parts, data.images)
    transform = base_module.encoder.transform()
    pixels = torch.stack([transform(ref.load()) for ref in data.images])
    text_features = torch.as_tensor(text.features)
    v_head, t_head, loss_fn = fresh_heads(cfg, base_module.dim, text_features.shape[1], "cpu")
    optimiser = make_optimiser(cfg, head_groups(cfg, v_head, t_head, loss_fn) + _encoder_groups(tcfg, base_vision))
    steps = len(pairs) // batch
    schedule = config_schedule(optimiser, cfg, epochs * steps)
    owner = torch.as_tensor(data.caption_image, dtype=torch.long)
    rng = np.random.default_rng(cfg.seed)
    base_module.eval()
    start = time.perf_counter()
    for _ in range(epochs):
        order = pairs[rng.permutation(len(pairs))]
        for step in range(steps):
            rows = torch.as_tensor(order[step * batch:(step + 1) * batch])
            img_rows = owner[rows]
            a = torch.nn.functional.normalize(v_head(base_module(base_module.inputs(pixels[img_rows]))), dim=-1)
            b = torch.nn.functional.normalize(t_head(text_features[rows]), dim=-1)
            loss = loss_fn(a, b, batch_positive_pairs(img_rows))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    baseline_s = time.perf_counter() - start
    agree = all(torch.allclose(p, q, atol=1e-5) for p, q in zip(ours_vision.tensors().values(),
                                                                 base_vision.tensors().values(), strict=True))
    agree = agree and torch.allclose(ours.probe.vision_head_[0].weight, v_head[0].weight, atol=1e-5)
    n_steps = epochs * steps
    return {"case": "tune_step", "ours_s": ours_s, "baseline_s": baseline_s, "ratio": ours_s / baseline_s,
            "agree": bool(agree),
            "note": f"{vision} [{parts}] + frozen text, {n_steps} steps of {batch} on cpu: probe tune "
                    f"{n_steps * batch / ours_s:.1f} vs hand-written {n_steps * batch / baseline_s:.1f} samples/s "
                    f"(the hand-written loop's images decoded beforehand)"}


def _tune_memory_child(vision: str, parts: str, batch: int, n_images: int, precision: str, checkpointing: bool) -> dict:
    """One variant in a fresh process: the fit's peak memory above what loading left (CUDA: the
    allocator's peak; CPU: the process's peak resident set), seconds per step, and the trained tensors."""
    import resource

    import numpy as np
    import torch

    from probe.align.config import ProbeConfig
    from probe.data import get_dataset
    from probe.encoders import load_encoder
    from probe.encoders.base import pick_device
    from probe.features.batches import encode_inputs
    from probe.features.paired import PairedFeatures
    from probe.registry import Registry
    from probe.unfreezing.config import TuneConfig
    from probe.unfreezing.modules import TunedEncoder, module_parts, pooled_spec, tunable
    from probe.unfreezing.parts import apply, parse_parts, resolve
    from probe.unfreezing.train import Side, tune_fit

    device = pick_device(None)
    torch.manual_seed(0)
    data = get_dataset("shapes").load("train").subset(np.arange(n_images), "train-head")
    registry = Registry.load()

    def side(name: str, selection: str, inputs):
        spec = registry.get(name)
        module = tunable(load_encoder(spec, device=device), "cls")
        features = encode_inputs(TunedEncoder(pooled_spec(spec, module), module, device), inputs, 16)
        chosen = parse_parts(selection, spec.modality)
        trainable = resolve(chosen, module_parts(module)[0], spec.name, spec.modality)
        apply(module.backbone, trainable)
        return Side(features, module if not chosen.frozen else None, trainable, inputs)

    vision_side = side(vision, parts, data.images)
    text = side("test/tiny-bert", "none", data.captions)
    pairs = PairedFeatures(vision_side.features, text.features, data.caption_image).usable_pairs()
    cfg = ProbeConfig(head="linear", loss="infonce", epochs=1, batch_size=batch, out_dim=256, norm=False)
    tcfg = TuneConfig(encoder_lr=1e-4, checkpoint_every=0, precision=precision, grad_checkpointing=checkpointing)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    result = tune_fit(vision_side, text, data.caption_image, pairs, cfg, tcfg, device, workers=0, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    seconds = time.perf_counter() - start
    weights = torch.cat([t.detach().float().cpu().flatten() for t in vision_side.tensors().values()])
    return {"device": device, "peak_bytes": int(peak), "step_s": seconds / max(1, result.steps),
            "steps": result.steps, "weights": weights.tolist()}


def tune_memory(vision: str = "baseline/random-vit-s16", parts: str = "blocks", batch: int = 32,
                n_images: int = 32) -> list[dict]:
    """``probe tune``'s step with gradient checkpointing against the same step keeping every
    activation (and, on a GPU, bf16 autocast against float32): peak memory of the fit and time per
    step, each variant in a fresh process; the trained weights must agree."""
    import json
    import subprocess
    import sys

    import numpy as np

    def variant(precision: str, checkpointing: bool) -> dict:
        code = ("import json, sys; from benchmarks.tune_cases import _tune_memory_child as c; "
                f"print(json.dumps(c({vision!r}, {parts!r}, {batch}, {n_images}, {precision!r}, {checkpointing})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    plain = variant("auto", False)
    on_gpu = plain["device"].startswith("cuda")
    precision = "bf16" if on_gpu else "fp32"
    plain = variant(precision, False) if on_gpu else plain
    out = []
    for label, other in (("checkpointing", variant(precision, True)),
                         *((("fp32 vs bf16", variant("fp32", False)),) if on_gpu else ())):
        tolerance = 1e-5 if label == "checkpointing" else 5e-2
        agree = bool(np.allclose(plain["weights"], other["weights"], atol=tolerance))
        # checkpointing: memory saved for time paid; bf16: the plain run is the fast one
        ours, base = (other, plain) if label == "checkpointing" else (plain, other)
        out.append({"case": f"tune_memory[{label},{plain['device']}]", "ours_s": ours["step_s"], "baseline_s": base["step_s"],
                    "ratio": base["step_s"] / ours["step_s"], "agree": agree,
                    "peak_mb": ours["peak_bytes"] / 2**20, "baseline_peak_mb": base["peak_bytes"] / 2**20,
                    "note": f"{vision} [{parts}], batch {batch}, {ours['steps']} steps: peak memory of the fit "
                            f"{ours['peak_bytes'] / 2**20:,.0f} vs {base['peak_bytes'] / 2**20:,.0f} MB, "
                            f"{ours['step_s']:.2f} vs {base['step_s']:.2f} s/step ({label})"})
    return out
