"""AIM v1 through the authors' package API, on a fixture package of the same layout and a tiny model
saved by the real ``PyTorchModelHubMixin`` into the Hugging Face cache layout."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

#: ``aim/v1/torch/models.py`` as the package lays it out: ``AIMForImageClassification(config)`` is a
#: hub mixin with ``preprocessor``, ``trunk`` (returns the probed blocks' average and every block's
#: output, and has ``post_trunk_norm``) and ``head``; here with small blocks.
FIXTURE_MODELS = '''
import torch
from torch import nn
from huggingface_hub import PyTorchModelHubMixin


class Preprocessor(nn.Module):
    def __init__(self, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, (32 // patch) ** 2, dim) * 0.1)

    def forward(self, x, mask=None):
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        return x + torch.tanh(self.fc(self.norm(x)))


class Trunk(nn.Module):
    def __init__(self, dim, depth, probed):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim) for _ in range(depth))
        self.post_trunk_norm = nn.LayerNorm(dim)
        self.probed = probed

    def forward(self, tokens, mask=None, max_block_id=-1, return_features=False):
        features = []
        for block in self.blocks:
            tokens = block(tokens)
            features.append(tokens)
        averaged = torch.stack([features[i] for i in self.probed], dim=-1).mean(dim=-1)
        return averaged, features


class AIMForImageClassification(PyTorchModelHubMixin, nn.Module):
    def __init__(self, config):
        super().__init__()
        self.preprocessor = Preprocessor(config["embed_dim"], config["patch_size"])
        self.trunk = Trunk(config["embed_dim"], config["num_blocks"], config["probe_layers"])
        self.head = nn.Linear(config["embed_dim"], 10)
'''

ENTRY = '''[[model]]
name = "aim/tiny"
modality = "vision"
loader = "aim-v1"
weights = "apple/aim-tiny"
pooling = "{pooling}"
image_size = 32
crop_pct = 1.0
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
embed_dim = 16
params_m = 0.01
objective = "ssl"
license = "x"
reference = "x"
'''


@pytest.fixture
def aim_package(tmp_path, monkeypatch):
    """The fixture package importable as ``aim.v1.torch.models``, removed again afterwards."""
    root = tmp_path / "site"
    models = root / "aim" / "v1" / "torch" / "models.py"
    models.parent.mkdir(parents=True)
    for folder in (root / "aim", root / "aim" / "v1", root / "aim" / "v1" / "torch"):
        (folder / "__init__.py").write_text("")
    models.write_text(textwrap.dedent(FIXTURE_MODELS))
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m == "aim" or m.startswith("aim.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [m for m in sys.modules if m == "aim" or m.startswith("aim.")]:
        del sys.modules[name]


def _saved_to_hub_cache(config: dict) -> object:
    """A tiny model saved by the package's own hub mixin into the HF cache layout (refs/main -> snapshot)."""
    import torch
    from aim.v1.torch.models import AIMForImageClassification

    torch.manual_seed(0)
    model = AIMForImageClassification(config).eval()
    repo = Path(os.environ["HF_HUB_CACHE"]) / "models--apple--aim-tiny"
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    model.save_pretrained(repo / "snapshots" / commit, config=config)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return model


def test_aim_entries_say_how_to_install_the_package_when_it_is_missing(monkeypatch):
    from probe.encoders.loadable import check
    from probe.registry import Registry

    monkeypatch.setitem(sys.modules, "aim", None)  # import aim -> ImportError, whatever is installed
    status = check(Registry.load().get("aim/600m"))
    assert not status.ok and "aim-v1 @ git+https://github.com/apple/ml-aim.git#subdirectory=aim-v1" in status.reason


@pytest.mark.parametrize("pooling", ["probe-layers", "mean"])
def test_aim_features_are_the_probed_blocks_average_or_the_normed_last_block(aim_package, tmp_path, pooling):
    import torch

    from probe.encoders import load_encoder
    from probe.encoders.loadable import check
    from probe.registry import Registry

    config = {"embed_dim": 16, "patch_size": 8, "num_blocks": 4, "probe_layers": [2, 3]}
    model = _saved_to_hub_cache(config)
    (tmp_path / "aim.toml").write_text(ENTRY.format(pooling=pooling))
    spec = Registry.load([tmp_path / "aim.toml"]).get("aim/tiny")
    assert check(spec).ok
    encoder = load_encoder(spec, device="cpu")
    pixels = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got = encoder.encode(pixels)
    # the reference, block by block from the saved weights: AIM's probed-blocks average (or the last
    # block after the final norm), then the mean over the 16 patches
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255
    with torch.no_grad():
        tokens = model.preprocessor((pixels.float() - mean) / std)
        outputs = []
        for block in model.trunk.blocks:
            tokens = block(tokens)
            outputs.append(tokens)
        if pooling == "probe-layers":
            expected = ((outputs[2] + outputs[3]) / 2).mean(dim=1)
        else:
            expected = model.trunk.post_trunk_norm(outputs[3]).mean(dim=1)
    assert got.shape == (3, 16)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[0], got[1])  # distinct images, distinct features
