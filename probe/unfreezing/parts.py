"""The trainable parts of an encoder: named groups of its parameters, and which of them a run trains.

A part is a set of whole tensors, or one row of a tensor (the text ``cls`` part is the CLS token's
row of the token-embedding matrix). Parts are found from parameter names, one rule table per
architecture kind, so the same names work for every model of a kind:

- vision transformers (timm): ``patch_embed``, ``cls_token`` (with register tokens), ``pos_embed``,
  ``blocks``, ``norm`` (the final LayerNorm);
- CNNs (timm): ``patch_embed`` (the stem), ``blocks`` (the stages), ``head`` (the last conv and its norm);
- text transformers (Hugging Face): ``token_embeddings`` (with token-type embeddings),
  ``position_embeddings``, ``cls``, ``blocks``, ``norm`` (the embedding LayerNorm; T5's final norm).

``blocks`` may be cut to the last k (``blocks:2``). A parameter no rule names (BERT's unused pooler)
is in no part and always frozen; :func:`part_map` lists them.

The paper notation of Aczel & Wattenhofer, ``V_u^f,T_u^u``: the subscript is the input embeddings
(patch or token embeddings with the CLS token and position embeddings), the superscript the
transformer blocks (with the final norm), ``u`` unfrozen and ``f`` frozen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from probe.errors import ProbeError


class PartError(ProbeError):
    """A part the encoder does not have: bad input, said before any training, never a failure record."""

VISION_PARTS = ("patch_embed", "cls_token", "pos_embed", "blocks", "norm", "head")
TEXT_PARTS = ("token_embeddings", "position_embeddings", "cls", "blocks", "norm")
#: parts in the paper's "input embeddings" group; every other part is in its "blocks" group
EMBEDDING_STAGE = {"patch_embed", "cls_token", "pos_embed", "token_embeddings", "position_embeddings", "cls"}

#: (part, pattern on the parameter name); the first match wins; a ``(\d+)`` group is the block index
_VISION_RULES = (
    ("patch_embed", r"patch_embed\.|conv_stem\.|bn1\.|stem\."),
    ("cls_token", r"(cls_token|reg_token)$"),
    ("pos_embed", r"pos_embed$"),
    ("blocks", r"(?:blocks|stages|layer)\.?(\d+)\."),
    ("norm", r"(norm|fc_norm)\."),
    ("head", r"conv_head\.|bn2\.|head\."),
)
_TEXT_RULES = (
    ("token_embeddings", r"(embeddings\.(word|token_type)_embeddings|shared|embed_tokens)\.weight$"),
    ("position_embeddings", r"embeddings\.position_embeddings\.weight$"),
    ("blocks", r"encoder\.(?:layer|block)\.(\d+)\.|encoder\.relative_attention_bias\."),
    ("norm", r"embeddings\.LayerNorm\.|final_layer_norm\."),
)


@dataclass(frozen=True)
class Part:
    """One named group: parameter names, and for a row part the rows of its one tensor."""

    name: str
    params: tuple[str, ...]
    rows: tuple[int, ...] = ()
    #: per parameter of ``blocks``: its block index (None for a tensor shared by every block)
    block_of: Mapping[str, int | None] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        """``embeddings`` or ``blocks``: the paper's two groups (a text encoder's embedding LayerNorm
        goes with its embeddings; a final norm, as in ViTs and T5, with the blocks)."""
        embedding_norm = self.name == "norm" and all(p.startswith("embeddings.") for p in self.params)
        return "embeddings" if self.name in EMBEDDING_STAGE or embedding_norm else "blocks"


@dataclass(frozen=True)
class Selection:
    """The parts one side trains: part name -> last-k blocks (None: all) for ``blocks``, else None;
    ``excluded``: parts held frozen inside what the others select (``all,-cls``: every part but the
    CLS token's row)."""

    parts: Mapping[str, int | None] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()

    @property
    def frozen(self) -> bool:
        return not self.parts

    def describe(self) -> str:
        if not self.parts:
            return "none"
        return "+".join([*(f"{n}:{k}" if k is not None else n for n, k in self.parts.items()),
                         *(f"-{n}" for n in self.excluded)])


def part_map(model: Any, modality: str, cls_row: int | None = None) -> tuple[dict[str, Part], list[str]]:
    """``(parts, unnamed)``: the parts ``model`` has, by name, and the parameters no rule names.

    ``cls_row`` is the CLS token's id in the token-embedding matrix (text); without one a text
    encoder has no ``cls`` part."""
    rules = _VISION_RULES if modality == "vision" else _TEXT_RULES
    found: dict[str, list[str]] = {}
    block_of: dict[str, int | None] = {}
    unnamed = []
    for name, _ in model.named_parameters():
        for part, pattern in rules:
            match = re.match(pattern, name) if part != "blocks" else re.search(pattern, name)
            if match:
                found.setdefault(part, []).append(name)
                if part == "blocks":
                    block_of[name] = int(match.group(1)) if match.groups() and match.group(1) else None
                break
        else:
            unnamed.append(name)
    parts = {name: Part(name, tuple(params), block_of=block_of if name == "blocks" else {})
             for name, params in found.items()}
    if modality == "text" and cls_row is not None:
        word = next((p for p in parts.get("token_embeddings", Part("", ())).params
                     if "token_type" not in p), None)
        if word is not None:
            parts["cls"] = Part("cls", (word,), rows=(cls_row,))
    order = VISION_PARTS if modality == "vision" else TEXT_PARTS
    return {name: parts[name] for name in order if name in parts}, unnamed


def block_modules(model: Any, modality: str) -> list[str]:
    """Names of the modules that are ``model``'s blocks (``blocks.3``, ``encoder.layer.3``), in order:
    the units gradient checkpointing recomputes."""
    pattern = dict(_VISION_RULES if modality == "vision" else _TEXT_RULES)["blocks"]
    names: dict[str, None] = {}
    for name, _ in model.named_parameters():
        match = re.search(pattern, name)
        if match and match.groups() and match.group(1):
            names[name[:match.end(1)]] = None
    return list(names)


def parse_parts(text: str, modality: str) -> Selection:
    """``"patch_embed,cls_token,blocks:2"`` (or ``all``, ``none``) as a :class:`Selection`; the names
    are checked against the encoder later (:func:`resolve`), the syntax here."""
    valid = VISION_PARTS if modality == "vision" else TEXT_PARTS
    items = [t.strip() for t in text.split(",") if t.strip()]
    excluded = excluded_parts([i for i in items if i.startswith("-")], modality, text)
    items = [i for i in items if not i.startswith("-")]
    chosen: dict[str, int | None] = {}
    for item in items:
        if item in ("none", "all"):
            if len(items) > 1 or (item == "none" and excluded):
                raise ProbeError(f"{modality} parts {text!r}: '{item}' stands alone"
                                 + (" (or with -PART exclusions)" if item == "all" else ""))
            return Selection({} if item == "none" else {"all": None}, excluded)
        name, _, last = item.partition(":")
        if name not in valid:
            raise ProbeError(f"unknown {modality} part {name!r}; valid: {', '.join(valid)}, all, none")
        if last and (name != "blocks" or not last.isdigit() or int(last) < 1):
            raise ProbeError(f"{modality} part {item!r}: only blocks takes a count, as blocks:K with K >= 1")
        chosen[name] = int(last) if last else None
    if excluded and not chosen:
        raise ProbeError(f"{modality} parts {text!r}: exclusions (-PART) need parts to exclude them from")
    return Selection(chosen, excluded)


def excluded_parts(items: list[str], modality: str, text: str) -> tuple[str, ...]:
    """The names in ``-PART`` items, checked: a part probe knows for ``modality``, not ``blocks``
    (its last-k form says which blocks train)."""
    valid = VISION_PARTS if modality == "vision" else TEXT_PARTS
    names = tuple(dict.fromkeys(item[1:] for item in items))
    for name in names:
        if name not in valid or name == "blocks":
            raise ProbeError(f"{modality} parts {text!r}: cannot exclude {name!r}; valid: "
                             f"{', '.join(f'-{v}' for v in valid if v != 'blocks')}")
    return names


_NOTATION = re.compile(r"^([VT])_([uf])\^([uf])$")


def parse_notation(text: str) -> tuple[Selection, Selection]:
    """The paper's ``V_u^f,T_u^u`` as ``(vision, text)`` selections of the embedding / block stages."""
    sides: dict[str, tuple[bool, bool]] = {}
    for item in [t.strip() for t in re.split(r"[,\s]+", text) if t.strip()]:
        match = _NOTATION.match(item)
        if not match:
            raise ProbeError(f"--freeze {item!r} is not the paper's notation: V_e^b and T_e^b with e (input "
                             "embeddings) and b (blocks) each u (unfrozen) or f (frozen), e.g. V_u^f,T_u^u")
        side, embed, blocks = match.groups()
        if side in sides:
            raise ProbeError(f"--freeze {text!r} names {side} twice")
        sides[side] = (embed == "u", blocks == "u")
    missing = [s for s in "VT" if s not in sides]
    if missing:
        raise ProbeError(f"--freeze {text!r} must name both sides (V_.^. and T_.^.), {missing[0]} is missing")
    def stages(embed: bool, blocks: bool) -> Selection:
        return Selection({**({"stage:embeddings": None} if embed else {}), **({"stage:blocks": None} if blocks else {})})

    return stages(*sides["V"]), stages(*sides["T"])


def notation(vision: Selection, text: Selection) -> str | None:
    """The paper's notation of two stage selections (``V_u^f,T_u^u``), None when they are not stages."""
    out = []
    for side, sel in (("V", vision), ("T", text)):
        if any(not k.startswith("stage:") for k in sel.parts) or sel.excluded:
            return None
        out.append(f"{side}_{'u' if 'stage:embeddings' in sel.parts else 'f'}^"
                   f"{'u' if 'stage:blocks' in sel.parts else 'f'}")
    return ",".join(out)


@dataclass(frozen=True)
class Trainable:
    """What one side trains, resolved against its encoder: whole tensors, row-masked tensors (only
    the listed rows train), and whole tensors with some rows held frozen (an excluded row part)."""

    tensors: tuple[str, ...]
    rows: Mapping[str, tuple[int, ...]]
    frozen_rows: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.tensors, *self.rows)


def resolve(selection: Selection, parts: Mapping[str, Part], encoder_name: str, modality: str) -> Trainable:
    """The tensors ``selection`` trains in an encoder with ``parts``; a part the encoder does not have
    is an error listing the ones it does."""
    wanted: dict[str, int | None] = {}
    for name, last in selection.parts.items():
        if name == "all":
            wanted |= {p: None for p in parts if p != "cls"}  # cls is a row of token_embeddings: already in
        elif name.startswith("stage:"):
            stage = name.partition(":")[2]
            wanted |= {p: None for p, part in parts.items() if part.stage == stage}
        elif name not in parts:
            kind = " (a CNN)" if modality == "vision" and "cls_token" not in parts and "patch_embed" in parts else ""
            raise PartError(f"{encoder_name} has no part {name!r}{kind}; its {modality} parts: {', '.join(parts)}")
        else:
            wanted[name] = last
    tensors: list[str] = []
    rows: dict[str, tuple[int, ...]] = {}
    for name, last in wanted.items():
        part = parts[name]
        if part.rows:
            rows.update({p: part.rows for p in part.params})
            continue
        params = list(part.params)
        if name == "blocks" and last is not None:
            indices = sorted({i for i in part.block_of.values() if i is not None})
            if last > len(indices):  # never silently every block
                raise PartError(f"{encoder_name} has {len(indices)} {modality} blocks; blocks:{last} asks for its last "
                                f"{last} (use blocks:{len(indices)} or blocks for all)")
            keep = set(indices[-last:])
            params = [p for p in params if part.block_of.get(p) in keep]
        tensors.extend(params)
    whole = set(tensors)
    rows = {p: r for p, r in rows.items() if p not in whole}
    frozen_rows: dict[str, tuple[int, ...]] = {}
    for name in selection.excluded:
        if name not in parts:
            raise PartError(f"{encoder_name} has no part {name!r} to exclude; its {modality} parts: {', '.join(parts)}")
        part = parts[name]
        for param in part.params:
            if part.rows and param in whole:  # train the tensor, hold these rows
                frozen_rows[param] = tuple(sorted({*frozen_rows.get(param, ()), *part.rows}))
            elif part.rows and param in rows:
                rows[param] = tuple(r for r in rows[param] if r not in part.rows)
            else:
                whole.discard(param)
    tensors = [t for t in tensors if t in whole]
    return Trainable(tuple(dict.fromkeys(tensors)), {p: r for p, r in rows.items() if r}, frozen_rows)


def apply(model: Any, trainable: Trainable) -> list[Any]:
    """Set ``requires_grad`` on exactly the trainable tensors; a row-masked tensor gets a gradient
    hook that zeroes every other row, a tensor with frozen rows one that zeroes those. Returns the
    hook handles."""
    import torch

    handles = []
    names = set(trainable.names)
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
        if name in trainable.rows or name in trainable.frozen_rows:
            shape = (param.shape[0], *([1] * (param.ndim - 1)))
            if name in trainable.rows:
                mask = torch.zeros(shape, dtype=param.dtype, device=param.device)
                mask[list(trainable.rows[name])] = 1
            else:
                mask = torch.ones(shape, dtype=param.dtype, device=param.device)
                mask[list(trainable.frozen_rows[name])] = 0
            handles.append(param.register_hook(lambda grad, mask=mask: grad * mask.to(grad.dtype)))
    return handles


def count_trainable(model: Any, trainable: Trainable) -> int:
    """Parameters that change: whole tensors in full, row-masked tensors by their rows."""
    sizes = dict(model.named_parameters())
    total = sum(sizes[n].numel() for n in trainable.tensors)
    total += sum(len(r) * (sizes[n].numel() // sizes[n].shape[0]) for n, r in trainable.rows.items())
    total -= sum(len(r) * (sizes[n].numel() // sizes[n].shape[0]) for n, r in trainable.frozen_rows.items())
    return total
