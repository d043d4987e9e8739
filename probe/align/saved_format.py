"""The schema of a saved aligned model's ``aligned.json``, checked before anything in it is used.

A saved model folder is something users share, so its ``aligned.json`` is read as hostile input: every
key has a type, every file it names is one of the files a saved model holds (a plain name inside the
folder, never a path), and the numbers agree with each other. Every problem is one
:class:`~probe.errors.ProbeError` naming the file, the key and what was expected, whether the folder
is read by ``probe eval``, ``probe export`` or :meth:`probe.AlignedModel.load`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from probe.errors import ProbeError

#: the files a fitted text encoder may save beside the heads (TF-IDF's vocabulary and weights)
TEXT_STATE_FILES = ("tfidf.json", "tfidf.safetensors")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Dims(_Strict):
    vision: int = Field(gt=0)
    text: int = Field(gt=0)


class SavedCorpus(BaseModel):
    """What the heads were fitted on, as the run's records state it (extra keys are the record's own)."""

    model_config = ConfigDict(extra="allow", strict=True)
    name: str = Field(min_length=1)
    split: str
    fingerprint: str | None = None


class TunedSide(_Strict):
    pooling: str | None = None
    dim: int | None = None
    parts: list[str] = Field(default_factory=list)
    tensors: list[str] = Field(default_factory=list)


class TokenSlots(_Strict):
    vision: int = Field(gt=0)
    text: int = Field(gt=0)


class AlignedMeta(_Strict):
    """``aligned.json``: a dict of these keys and no others."""

    format_version: int
    probe_version: str
    config: dict[str, Any]
    vision: dict[str, Any]
    text: dict[str, Any]
    dims: Dims
    corpus: SavedCorpus
    heads_sha256: str
    text_state: dict[str, str] = Field(default_factory=dict)
    tuned: dict[str, TunedSide] | None = None
    encoders_sha256: str | None = None
    tune_config: dict[str, Any] | None = None
    #: token heads (freeze-align's): how many token slots each side's rows hold
    token_slots: TokenSlots | None = None


def check_meta(raw: Any, where: Path) -> dict[str, Any]:
    """``raw`` (decoded ``aligned.json``) if it has the saved-model schema, else a one-line ProbeError."""
    if not isinstance(raw, dict):
        raise ProbeError(f"{where}: expected a JSON object with the saved model's keys, got {type(raw).__name__}")
    try:
        meta = AlignedMeta.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ProbeError(f"{where}: key {key!r}: {first['msg']}"
                         + (f" ({exc.error_count()} problems)" if exc.error_count() > 1 else "")) from None
    for key, digest in (("heads_sha256", meta.heads_sha256), ("encoders_sha256", meta.encoders_sha256),
                        *((f"text_state.{name}", d) for name, d in meta.text_state.items())):
        if digest is not None and not _SHA256.fullmatch(digest):
            raise ProbeError(f"{where}: key {key!r} is {digest!r}; expected a sha256 (64 lowercase hex digits)")
    unknown = sorted(set(meta.text_state) - set(TEXT_STATE_FILES))
    if unknown:  # a path here would make export write, and load read, outside the folder
        raise ProbeError(f"{where}: key 'text_state' names {unknown[0]!r}; a saved text state is one of "
                         f"{', '.join(TEXT_STATE_FILES)}")
    if (meta.tuned is None) != (meta.encoders_sha256 is None) or (meta.tuned is None) != (meta.tune_config is None):
        raise ProbeError(f"{where}: keys 'tuned', 'encoders_sha256' and 'tune_config' come together (a probe tune "
                         "model) or not at all")
    if meta.tuned is not None and sorted(set(meta.tuned) - {"vision", "text"}):
        raise ProbeError(f"{where}: key 'tuned' holds {sorted(set(meta.tuned) - {'vision', 'text'})[0]!r}; "
                         "expected vision and/or text")
    from probe.align.config import TOKEN_HEADS

    token_head = meta.config.get("head") in TOKEN_HEADS
    if token_head != (meta.token_slots is not None):
        raise ProbeError(f"{where}: key 'token_slots' comes with a token head ({', '.join(TOKEN_HEADS)}) and only then")
    if meta.token_slots is not None:
        for side in ("vision", "text"):
            dim, slots = getattr(meta.dims, side), getattr(meta.token_slots, side)
            if (dim - 1) % slots:
                raise ProbeError(f"{where}: key 'dims.{side}' is {dim}, not 1 + {slots} token slots x a width")
    return raw


def check_head_shapes(state: dict[str, Any], heads: dict[str, Any], where: Path) -> None:
    """The saved tensors fit the heads ``aligned.json`` describes (names and shapes), else one line."""
    for part, module in heads.items():
        prefix = f"{part}."
        saved = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        expected = module.state_dict()
        missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
        if missing or extra:
            name = (missing or extra)[0]
            raise ProbeError(f"{where}: {part} head tensor {name!r} is {'missing' if missing else 'not expected'}; the "
                             "heads file does not belong to the configuration and dims in aligned.json")
        for name, tensor in expected.items():
            if tuple(saved[name].shape) != tuple(tensor.shape):
                raise ProbeError(f"{where}: {part} head tensor {name!r} has shape {tuple(saved[name].shape)}, "
                                 f"expected {tuple(tensor.shape)} from the configuration and dims in aligned.json")
