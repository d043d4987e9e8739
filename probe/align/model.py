"""Saving an aligned pair: both encoders' registry entries plus the fitted heads, in one folder that
:class:`probe.aligned.AlignedModel` loads.

A saved model is a folder holding ``heads.safetensors`` (vision head, text head and the loss's
scale and bias) and ``aligned.json`` (format version, both encoders' full registry entries, the
head configuration, input widths, the training corpus, and the heads file's sha256). It loads with
no results tree and no registry file: :meth:`AlignedModel.load` rebuilds the heads and, on first
use, the encoders, so ``encode_image`` takes a user's own images and ``encode_text`` any text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.encoder_spec import EncoderSpec

FORMAT_VERSION = 1
HEADS_FILE, CONFIG_FILE, ENCODERS_FILE = "heads.safetensors", "aligned.json", "encoders.safetensors"


def save_aligned(folder: Path, probe: Any, vision: EncoderSpec, text: EncoderSpec, dims: tuple[int, int],
                 corpus: dict[str, Any], fitted_text: Any = None, tuned: dict[str, dict[str, Any]] | None = None,
                 tune_config: dict[str, Any] | None = None, token_slots: dict[str, int] | None = None) -> Path:
    """Write a fitted probe's heads and everything needed to rebuild the pair; atomic per file,
    ``aligned.json`` last, so a folder with that file is complete. ``fitted_text`` is a text encoder
    fitted on the corpus (TF-IDF): its state is saved too, so ``encode_text`` works on new texts.

    ``tuned`` (``probe tune``) holds per side the pooling the heads were trained on, the parts trained
    and their tensors; the tensors go to ``encoders.safetensors`` and are put back into the encoder
    when the model is loaded."""
    from safetensors.torch import save

    from probe.io import atomic_open, sha256_file, write_json
    from probe.version import __version__

    state = {f"{part}.{name}": tensor.detach().cpu().contiguous()
             for part, module in (("vision", probe.vision_head_), ("text", probe.text_head_), ("loss", probe.loss_))
             for name, tensor in module.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_open(folder / HEADS_FILE, "wb") as handle:
        handle.write(save(state))
    state_files = fitted_text.save_state(folder) if fitted_text is not None else []
    extra: dict[str, Any] = {}
    if tuned is not None:
        tensors = {f"{side}.{name}": tensor.detach().float().cpu().contiguous()
                   for side, info in tuned.items() for name, tensor in info["tensors"].items()}
        with atomic_open(folder / ENCODERS_FILE, "wb") as handle:
            handle.write(save(tensors))
        extra = {"tuned": {side: {k: (sorted(v) if k == "tensors" else v) for k, v in info.items()}
                           for side, info in tuned.items()},
                 "encoders_sha256": sha256_file(folder / ENCODERS_FILE), "tune_config": tune_config}
    if token_slots is not None:  # token heads read rows of this many tokens (probe.encoders.tokens)
        extra["token_slots"] = token_slots
    write_json(folder / CONFIG_FILE, {**extra,
        "format_version": FORMAT_VERSION, "probe_version": __version__, "config": probe.config.to_dict(),
        "vision": vision.to_dict(), "text": text.to_dict(), "dims": {"vision": dims[0], "text": dims[1]},
        "corpus": corpus, "heads_sha256": sha256_file(folder / HEADS_FILE),
        "text_state": {name: sha256_file(folder / name) for name in state_files}})
    return folder
