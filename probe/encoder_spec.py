"""An encoder's specification: where its weights come from and how its inputs and outputs are shaped.

A value type on the ground floor, so that every layer (encoders, features, records) can hold one
without importing the catalogue that reads them from ``registry/*.toml`` (:mod:`probe.registry`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.settings import builtin_registry_dir

MODALITIES = ("vision", "text")
OBJECTIVES = ("ssl", "supervised", "contrastive", "none")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.+-]*/[a-z0-9][a-z0-9_.+-]*$")


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder: where its weights come from and exactly how its inputs and outputs are shaped.

    Weights, revision, preprocessing and pooling are bound together so they cannot drift apart;
    the feature cache hashes all of them.
    """

    name: str
    modality: str
    loader: str
    weights: str
    embed_dim: int
    params_m: float
    objective: str
    license: str
    reference: str
    revision: str = "main"
    #: how token outputs become one vector; which values are valid is the loader family's to say
    pooling: str | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    #: why the preprocessing differs from the weights' own config (e.g. timm's pretrained config):
    #: whose evaluation protocol it follows. Empty means it agrees (a test checks timm entries).
    preprocessing_note: str = ""
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    auto_class: str | None = None
    prefix_tokens: int = 1
    max_length: int = 256
    text_prefix: str = ""
    trust_remote_code: bool = False
    #: pip requirements the weights' own code needs beyond probe's (e.g. remote code written for an
    #: older transformers); an unmet one makes the entry unavailable with that requirement as reason
    requires: tuple[str, ...] = ()
    imagenet_knn: float | None = None
    imagenet_linear: float | None = None
    mteb_avg: float | None = None
    notes: str = ""
    source: str = ""
    #: a hidden layer instead of the output: block (or CNN stage) ``layer``, 1 being the first, pooled
    #: the entry's way (:mod:`probe.encoders.layers`). None: the entry's own output. See :meth:`at_layer`.
    layer: int | None = None
    #: a token-sequence variant (:meth:`as_tokens`): every output token kept, in this many slots; None:
    #: the entry's pooled output
    tokens: int | None = None
    #: several hidden layers read from one forward pass, their pooled features side by side (what
    #: :mod:`probe.features.layers` computes each layer's entry from); empty: one layer or the output
    layers: tuple[int, ...] = ()

    def at_layer(self, layer: int, width: int) -> EncoderSpec:
        """This entry read at hidden ``layer`` (``width`` wide there): a variant of its own, cached apart
        and named ``<name>@<layer>``."""
        return dataclasses.replace(self, layer=layer, embed_dim=width, name=f"{self.name}@{layer}")

    def at_layers(self, layers: Sequence[int], widths: Sequence[int]) -> EncoderSpec:
        """This entry read at several hidden ``layers`` in one forward pass, each ``widths[i]`` wide: rows of
        the layers' pooled features side by side, named ``<name>@<a>+<b>+...``."""
        ordered = sorted(zip(layers, widths, strict=True))
        return dataclasses.replace(self, layer=None, layers=tuple(k for k, _ in ordered),
                                   embed_dim=sum(w for _, w in ordered),
                                   name=f"{self.name}@{'+'.join(str(k) for k, _ in ordered)}")

    @property
    def read_layers(self) -> tuple[int, ...]:
        """The hidden layers this variant reads (empty: the entry's output)."""
        return self.layers or ((self.layer,) if self.layer is not None else ())

    def as_tokens(self, slots: int, width: int) -> EncoderSpec:
        """This entry's output tokens unpooled (``width`` wide, at most ``slots`` of them): a variant of its
        own, cached apart and named ``<name>#tokens``, whose rows are :func:`probe.encoders.pooling.token_rows`
        (the count of real tokens, then the tokens padded with zeros), ``1 + slots x width`` wide."""
        return dataclasses.replace(self, tokens=slots, pooling="tokens", embed_dim=1 + slots * width,
                                   name=f"{self.name}#tokens")

    @property
    def family(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def is_control(self) -> bool:
        """Baselines (pixels, random weights, TF-IDF) are controls, never real models."""
        return self.loader == "baseline" and not self.is_test

    @property
    def is_test(self) -> bool:
        """Tiny random-weight entries for fast tests; never part of ``all``."""
        return self.family == "test"

    @property
    def runs_code(self) -> str | None:
        """Why loading this entry runs Python code that is not probe's (None when it does not)."""
        if self.trust_remote_code:
            return "trust_remote_code = true runs the model repository's own Python code"
        if self.loader == "packaged":
            return f"loader 'packaged' imports the Python package {self.weights!r}"
        return None

    @property
    def from_user_file(self) -> bool:
        """Read from a file outside probe's own catalogue (``--registry``, ``$PROBE_REGISTRY``, a saved
        model's config). Specs built in code (empty ``source``) are the calling program's own."""
        if not self.source:
            return False
        try:
            Path(self.source).resolve().relative_to(builtin_registry_dir().resolve())
        except ValueError:
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON records and cache keys (``source`` is where it was read, not what)."""
        out = dataclasses.asdict(self)
        out.pop("source")
        for later in ("layer", "tokens", "layers"):  # an entry's own output keeps the cache keys it had before these
            if out[later] in (None, ()):
                out.pop(later)
        if "layers" in out:
            out["layers"] = list(out["layers"])
        for key in ("mean", "std"):
            if out[key] is not None:
                out[key] = list(out[key])
        out["requires"] = list(out["requires"])
        return out

