"""An aligned pair you can take home: both encoders' registry entries plus the fitted heads.

:class:`AlignedModel` loads a folder written by :func:`probe.align.model.save_aligned` (``probe run``)
or by ``probe tune`` (whose encoders' trained weights it puts back), with no results tree and no
registry file, so ``encode_image`` takes a user's own images and ``encode_text`` any text. It sits
above both alignment and unfreezing because it loads what either saved.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.align.config import ProbeConfig
from probe.align.model import CONFIG_FILE, ENCODERS_FILE, FORMAT_VERSION, HEADS_FILE
from probe.encoder_spec import EncoderSpec
from probe.errors import ProbeError


class AlignedModel:
    """Both encoders and the heads that map them into one space (L2-normalised embeddings)."""

    def __init__(self, vision: EncoderSpec, text: EncoderSpec, config: ProbeConfig, heads: dict[str, Any],
                 meta: dict[str, Any], device: str | None = None, allow_download: bool | None = None):
        self.vision_spec, self.text_spec, self.config, self.meta = vision, text, config, meta
        self.vision_head, self.text_head, self.loss = heads["vision"], heads["text"], heads["loss"]
        self.device, self.allow_download = device, allow_download
        self._encoders: dict[str, Any] = {}
        self.folder: Path | None = None  # where it was loaded from (a fitted text encoder's state is there)

    # --- loading and saving ------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str | None = None, allow_download: bool | None = None) -> AlignedModel:
        """A saved model folder (or its ``aligned.json``); every problem is a one-line ProbeError."""
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from probe.align.heads import heads_for
        from probe.align.losses import loss_for
        from probe.align.saved_format import check_head_shapes, check_meta
        from probe.io import sha256_file
        from probe.registry import Registry, spec_from_dict

        folder = Path(path).expanduser()
        folder = folder.parent if folder.name == CONFIG_FILE else folder
        where = folder / CONFIG_FILE
        try:
            raw = json.loads(where.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProbeError(f"{folder} is not a saved aligned model (no {CONFIG_FILE}); `probe run` saves one "
                             "per result under <results>/models/") from None
        except (OSError, ValueError) as exc:
            raise ProbeError(f"cannot read {where}: {exc}") from None
        if isinstance(raw, dict) and raw.get("format_version") != FORMAT_VERSION:
            raise ProbeError(f"{where} has format_version {raw.get('format_version')!r}; this probe "
                             f"reads {FORMAT_VERSION}")
        meta = check_meta(raw, where)
        heads_path = folder / HEADS_FILE
        if not heads_path.is_file() or sha256_file(heads_path) != meta.get("heads_sha256"):
            raise ProbeError(f"{heads_path} is missing or does not match the checksum in {CONFIG_FILE} "
                             "(truncated or replaced); save the model again")
        try:
            state = load_file(str(heads_path))
        except (SafetensorError, OSError) as exc:
            raise ProbeError(f"{heads_path} cannot be read: {exc}") from None
        try:
            config = ProbeConfig(**meta["config"])
        except TypeError as exc:  # a key ProbeConfig does not have
            raise ProbeError(f"{where}: key 'config': {exc}".replace("ProbeConfig.__init__() ", "")) from None
        except ProbeError as exc:
            raise ProbeError(f"{where}: key 'config': {exc}") from None
        builtin = Registry.load()
        vision = _catalogued(spec_from_dict(meta["vision"], source=str(where)), builtin)
        text = _catalogued(spec_from_dict(meta["text"], source=str(where)), builtin)
        for side, spec in (("vision", vision), ("text", text)):
            if spec.modality != side:
                raise ProbeError(f"{where}: key {side!r} is {spec.name!r}, a {spec.modality} encoder")
        dims = meta["dims"]
        torch.manual_seed(0)  # every weight is overwritten below; the seed only keeps construction quiet
        if meta.get("token_slots") is not None:  # token heads: freeze-align's projectors on token rows
            from probe.align.token_heads import saved_token_heads

            heads = saved_token_heads(config, dims, meta["token_slots"])
        else:
            vision_head, text_head = heads_for(config, dims["vision"], dims["text"])
            heads = {"vision": vision_head, "text": text_head, "loss": loss_for(config)}
        check_head_shapes(state, heads, heads_path)
        for part, module in heads.items():
            prefix = f"{part}."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                   strict=True)
            module.eval()
        checked = dict(meta.get("text_state", {}))
        if meta.get("encoders_sha256") is not None:
            checked[ENCODERS_FILE] = meta["encoders_sha256"]
        for name, digest in checked.items():
            if not (folder / name).is_file() or sha256_file(folder / name) != digest:
                raise ProbeError(f"{folder / name} is missing or does not match the checksum in {CONFIG_FILE} "
                                 "(truncated or replaced); save the model again")
        model = cls(vision, text, config, heads, meta, device, allow_download)
        model.folder = folder
        return model

    @property
    def files(self) -> list[str]:
        """The files of the saved folder, ``aligned.json`` last (plain names, checked when loaded)."""
        tuned = [ENCODERS_FILE] if self.meta.get("encoders_sha256") is not None else []
        return [HEADS_FILE, *self.meta.get("text_state", {}), *tuned, CONFIG_FILE]

    def export(self, out: str | Path, source: str | Path) -> Path:
        """Copy the saved folder ``source`` to ``out`` (a folder of its own, loadable anywhere).

        The copy is made in a hidden folder beside ``out`` and renamed into place when complete, so a
        failure (a full disk) leaves no half folder that would block a retry; each file is copied to a
        path checked to lie inside that folder."""
        import os
        import tempfile

        from probe.io import current_umask

        out, source = Path(out).expanduser(), Path(source).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ProbeError(f"{out} exists and is not empty (or is not a folder); choose a new folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
        try:
            root = staging.resolve()
            for name in self.files:
                target = (staging / name).resolve()
                if target.parent != root:
                    raise ProbeError(f"{source / CONFIG_FILE} names {name!r}, which is not a file of the folder")
                try:
                    shutil.copy2(source / name, target)
                except OSError as exc:
                    raise ProbeError(f"cannot write {out / name}: {exc.strerror or exc}; nothing was exported") from None
            os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700
            if out.exists():
                out.rmdir()  # empty, checked above
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return out

    # --- heads on features ---------------------------------------------------------------------------
    def _apply(self, head: Any, features: np.ndarray) -> np.ndarray:
        import torch

        rows = np.ascontiguousarray(features, dtype=np.float32)
        if not rows.flags.writeable:  # a cache entry's read-only map: torch wants memory it may write
            rows = rows.copy()
        with torch.inference_mode():
            out = head(torch.from_numpy(rows))
            return torch.nn.functional.normalize(out, dim=-1).numpy()

    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """Vision-encoder features -> aligned, L2-normalised image embeddings."""
        return self._apply(self.vision_head, features)

    def embed_text_features(self, features: np.ndarray) -> np.ndarray:
        return self._apply(self.text_head, features)

    # the names evaluation calls fitted probes by
    embed_images = embed_image_features
    embed_texts = embed_text_features

    # --- end to end ---------------------------------------------------------------------------------
    def feature_spec(self, modality: str) -> EncoderSpec:
        """The entry whose features the heads read: the encoder's own, or its token rows for token heads."""
        spec = self.vision_spec if modality == "vision" else self.text_spec
        slots = self.meta.get("token_slots")
        if slots is None:
            return spec
        from probe.encoders.tokens import width_of_rows

        return spec.as_tokens(slots[modality], width_of_rows(self.meta["dims"][modality], slots[modality]))

    def encoder(self, modality: str) -> Any:
        """The vision or text encoder, loaded on first use."""
        from probe.encoders import load_encoder
        from probe.encoders.families import family_of

        if modality not in self._encoders:
            spec = self.feature_spec(modality)
            encoder: Any = load_encoder(spec, device=self.device, allow_download=self.allow_download)
            tuned = (self.meta.get("tuned") or {}).get(modality)
            if tuned is not None and tuned.get("pooling") is not None:
                encoder = self._tuned(encoder, modality, tuned)
            if family_of(spec).fitted_on_corpus(spec):
                if not self.meta.get("text_state"):
                    raise ProbeError(f"model {spec.name!r} is fitted on its training captions, and this saved model "
                                     "predates saving that state; encode features yourself and use embed_text_features")
                assert self.folder is not None
                encoder.load_state(self.folder)
            self._encoders[modality] = encoder
        return self._encoders[modality]

    def _tuned(self, encoder: Any, modality: str, tuned: dict[str, Any]) -> Any:
        """The encoder with its trained tensors put back, pooled as it was trained (``probe tune``)."""
        import torch
        from safetensors.torch import load_file

        from probe.unfreezing.modules import TunedEncoder, pooled_spec, tunable

        module = tunable(encoder, tuned["pooling"])
        assert self.folder is not None
        prefix = f"{modality}."
        state = {k[len(prefix):]: v for k, v in load_file(str(self.folder / ENCODERS_FILE)).items()
                 if k.startswith(prefix)}
        params = dict(module.backbone.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise ProbeError(f"{self.folder / ENCODERS_FILE} holds {unknown[0]!r}, which "
                             f"{encoder.spec.name} does not have; the saved model belongs to another encoder")
        with torch.no_grad():
            for name, tensor in state.items():
                params[name].copy_(tensor)
        module.to(encoder.device)
        # features of trained weights are cached under a revision naming them, never the encoder's own
        suffix = f"+tuned.{self.meta['encoders_sha256'][:12]}" if state else ""
        return TunedEncoder(pooled_spec(encoder.spec, module, suffix), module, encoder.device)

    @property
    def tuned(self) -> bool:
        """Whether the encoders were trained or pool other than their entries (``probe tune``)."""
        return any(side.get("pooling") is not None for side in (self.meta.get("tuned") or {}).values())

    def encode_image(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Aligned embeddings of PIL images or image paths, preprocessed as the vision entry says."""
        import torch

        from probe.data.base import FileImage

        if not len(images):
            return np.zeros((0, self.config.out_dim), dtype=np.float32)
        encoder = self.encoder("vision")
        transform = encoder.transform()
        out = []
        for start in range(0, len(images), batch_size):
            batch = []
            for number, item in enumerate(images[start:start + batch_size], start=start):
                try:  # a path is read as extraction reads it
                    batch.append(transform.from_ref(FileImage(str(Path(item).expanduser())))
                                 if isinstance(item, (str, Path)) else transform(item))
                except (OSError, ValueError) as exc:
                    raise ProbeError(f"image {number} ({item if isinstance(item, (str, Path)) else type(item).__name__}) "
                                     f"cannot be read: {exc}") from None
            with torch.inference_mode():
                out.append(encoder.encode(torch.stack(batch)))
        return self.embed_image_features(np.concatenate(out))

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Aligned embeddings of texts (an empty list gives an empty [0, dim] array)."""
        if isinstance(texts, str):
            raise ProbeError("encode_text takes a list of texts, not one string; wrap it: [text]")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise ProbeError(f"encode_text: text {bad} is {texts[bad]!r}, not a string")
        if not len(texts):
            return np.zeros((0, self.config.out_dim), dtype=np.float32)
        encoder = self.encoder("text")
        feats = np.concatenate([encoder.encode(list(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)])
        return self.embed_text_features(feats)

    def zero_shot_classifier(self, classnames: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """[classes, dim] class embeddings: each class's prompts encoded, normalised, averaged
        over the templates and normalised again (CLIP's ensembling)."""
        from probe.metrics.zeroshot import check_prompt_parts, class_embeddings, prompts

        check_prompt_parts(classnames, templates, "zero_shot_classifier")
        return class_embeddings(self.encode_text(prompts(classnames, templates)), len(classnames))


def _catalogued(spec: EncoderSpec, registry: Any) -> EncoderSpec:
    """probe's own registry entry when the saved spec is exactly that entry, else the saved spec.

    A saved model names its encoders in full; one that matches the built-in catalogue is trusted as
    the catalogue is (it may run packaged or remote code), while one that differs is a user file's
    entry, which runs code only with --trust-remote-code.
    """
    try:
        builtin = registry.get(spec.name)
    except ProbeError:
        return spec
    return builtin if not builtin.from_user_file and builtin.to_dict() == spec.to_dict() else spec
