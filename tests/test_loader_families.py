"""The loader registry: families validate entries, answer availability, load; a new family plugs in."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from probe.encoders.families import FAMILY_MODULES, family
from probe.errors import ProbeError
from probe.registry import Registry, parse_registry_file

VISION = 'modality = "vision"\n[[model]]\nobjective = "ssl"\nlicense = "MIT"\nreference = "x"\nparams_m = 1.0\n'


def entry(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "extra.toml"
    path.write_text(VISION + textwrap.dedent(body))
    return path


def test_every_shipped_entry_has_a_family_that_accepts_it():
    registry = Registry.load()
    for spec in registry.list(include_tests=True):
        fam = family(spec.loader)
        assert spec.pooling in fam.valid_poolings(spec.modality, spec.weights), spec.name
    tfidf = registry.get("baseline/tfidf-svd-256")
    assert family(tfidf.loader).fitted_on_corpus(tfidf) and tfidf.pooling is None
    assert not family("baseline").fitted_on_corpus(registry.get("baseline/pixels-16"))


@pytest.mark.parametrize("body, message", [
    ('name = "a/b"\nloader = "timm"\nweights = "x/y"\npooling = "flatten"\nembed_dim = 8\nimage_size = 8\n'
     'mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n', "pooling 'flatten' is not one of cls, mean, cls+mean, mean_all, pooler"),
    ('name = "a/b"\nloader = "timm"\nweights = "x/y"\nembed_dim = 8\nimage_size = 8\n'
     'mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n', "missing field pooling (one of cls, mean, cls+mean, mean_all, pooler)"),
    ('name = "a/b"\nloader = "baseline"\nweights = "pixels"\npooling = "mean"\nembed_dim = 8\nimage_size = 8\n'
     'mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n', "pooling does not apply to 'pixels' entries"),
    ('name = "a/b"\nloader = "baseline"\nweights = "noise"\nembed_dim = 8\nimage_size = 8\n'
     'mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n', "baseline weights 'noise' is not one of pixels, tfidf-svd"),
    ('name = "a/b"\nloader = "packaged"\nweights = "some-package"\npooling = "pooler"\nembed_dim = 8\n'
     'image_size = 8\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n', "packaged vision weights need 'arch'"),
    ('name = "a/b"\nloader = "sentence-transformers"\nweights = "x/y"\nembed_dim = 8\nimage_size = 8\n'
     'mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n', "loader 'sentence-transformers' has no vision encoders"),
    ('name = "a/b"\nloader = "onnx-runtime"\nweights = "x/y"\nembed_dim = 8\nimage_size = 8\n'
     'mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n', "loader 'onnx-runtime' is not one of timm, transformers"),
])
def test_families_validate_their_entries(tmp_path, body, message):
    with pytest.raises(ProbeError) as info:
        parse_registry_file(entry(tmp_path, body))
    assert "model 'a/b'" in str(info.value) and message in str(info.value)


def test_sentence_transformers_entries_may_leave_pooling_to_the_model(tmp_path):
    path = tmp_path / "text.toml"
    path.write_text('modality = "text"\n[[model]]\nname = "a/b"\nloader = "sentence-transformers"\nweights = "x/y"\n'
                    'embed_dim = 8\nparams_m = 1.0\nobjective = "contrastive"\nlicense = "MIT"\nreference = "x"\n')
    (spec,) = parse_registry_file(path)
    assert spec.pooling is None


CONSTANT_FAMILY = '''
"""A family whose encoders give one fixed vector per caption length (a stand-in for a real one)."""
import numpy as np

from probe.encoders.availability import Availability
from probe.encoders.base import TextEncoder
from probe.encoders.families import LoaderFamily


class Lengths(TextEncoder):
    def encode(self, batch):
        return self._check_dim(np.array([[len(t), t.count(" ")] for t in batch], dtype=np.float32))


class ConstantFamily(LoaderFamily):
    name = "lengths"
    poolings = {"text": (None,)}

    def availability(self, spec, allow_download):
        return Availability(spec.weights == "ready", "always here" if spec.weights == "ready" else "not ready")

    def load(self, spec, device, allow_download):
        return Lengths(spec, device)


FAMILY = ConstantFamily()
'''


def test_a_new_family_is_one_module_and_one_line(tmp_path, monkeypatch):
    """Registry validation, availability, loading and the cache all reach the new family."""
    from probe.encoders import load_encoder
    from probe.encoders.loadable import check
    from probe.errors import UnavailableError
    from probe.features import ExtractOptions, split_features

    (tmp_path / "lengths_family.py").write_text(CONSTANT_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FAMILY_MODULES, "lengths", "lengths_family")
    path = tmp_path / "mine.toml"
    path.write_text('modality = "text"\n[defaults.len]\nloader = "lengths"\nembed_dim = 2\nparams_m = 0.0\n'
                    'objective = "none"\nlicense = "MIT"\nreference = "x"\n'
                    '[[model]]\nname = "len/ready"\nweights = "ready"\n[[model]]\nname = "len/later"\nweights = "later"\n')
    registry = Registry.load([path])
    ready, later = registry.get("len/ready"), registry.get("len/later")
    assert check(ready).ok and check(later).reason == "not ready"
    with pytest.raises(UnavailableError, match="len/later.*not ready"):
        load_encoder(later)
    from probe.data.base import SplitData

    data = SplitData("toy", "train", images=[], captions=["a cat", "two red dogs"], caption_image=[0, 0])
    features = split_features(ready, data, ExtractOptions(cache_dir=tmp_path / "cache", progress=False))
    assert features.features.tolist() == [[5.0, 1.0], [12.0, 2.0]]
    monkeypatch.delitem(sys.modules, "lengths_family")


def _hub_snapshot(cache: Path, repo: str, model) -> Path:
    """A model saved as timm pushes it, placed in the Hugging Face cache layout (refs/main -> snapshot)."""
    from timm.models import save_for_hf

    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo_dir / "snapshots" / commit
    save_for_hf(model, str(snapshot), safe_serialization=True)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def test_hub_entries_load_from_the_local_cache_without_touching_the_environment(tmp_path, monkeypatch):
    """No HF_HUB_OFFLINE set and downloads not allowed: the loader asks for local files only."""
    import timm
    import torch

    from probe.encoders import load_encoder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    cache = Path(os.environ["HF_HUB_CACHE"])
    torch.manual_seed(3)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8,
                              embed_dim=32, depth=1, num_heads=2).eval()
    _hub_snapshot(cache, "someone/tiny-vit", model)
    path = tmp_path / "hub.toml"
    path.write_text(VISION + 'name = "hub/tiny"\nloader = "timm"\nweights = "someone/tiny-vit"\n'
                    'pooling = "cls"\nembed_dim = 32\nimage_size = 32\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n'
                    'model_kwargs = { img_size = 32, patch_size = 8, embed_dim = 32, depth = 1, num_heads = 2 }\n')
    spec = Registry.load([path]).get("hub/tiny")
    before = dict(os.environ)
    encoder = load_encoder(spec, device="cpu", allow_download=False)
    assert dict(os.environ) == before  # loading writes no process-wide settings
    pixels = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        expected = model.forward_features(pixels)[:, 0].numpy()
    np.testing.assert_allclose(encoder.encode(pixels), expected, atol=1e-5)
    missing = path.read_text().replace("someone/tiny-vit", "someone/absent").replace("hub/tiny", "hub/absent")
    path.write_text(missing)
    from probe.errors import UnavailableError

    with pytest.raises(UnavailableError, match="not in the local Hugging Face cache"):
        load_encoder(Registry.load([path]).get("hub/absent"), device="cpu", allow_download=False)


def test_released_checkpoints_load_from_torch_hub_cache_or_a_file_unwrapped(tmp_path, monkeypatch):
    """iBOT- and DINO-style releases: {"state_dict": {"module.backbone.…": …}} at a URL, or a local file."""
    import timm
    import torch

    from probe.encoders import load_encoder
    from probe.encoders.loadable import check
    from probe.encoders.timm_encoder import url_cache_path
    from probe.errors import UnavailableError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    kwargs = "{ img_size = 32, patch_size = 8, embed_dim = 32, depth = 1, num_heads = 2 }"
    torch.manual_seed(5)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8,
                              embed_dim=32, depth=1, num_heads=2).eval()
    released = {"epoch": 800, "state_dict": {f"module.backbone.{k}": v for k, v in model.state_dict().items()}}
    released["state_dict"]["module.backbone.masked_embed"] = torch.zeros(32)  # extra pretraining-only keys are fine
    url = "https://example.org/release/vit_tiny/checkpoint_teacher.pth"
    body = (f'name = "ssl/tiny"\nloader = "timm"\narch = "vit_tiny_patch16_224"\nweights = "{url}"\npooling = "cls"\n'
            f'embed_dim = 32\nimage_size = 32\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\nmodel_kwargs = {kwargs}\n')
    spec = Registry.load([entry(tmp_path, body)]).get("ssl/tiny")
    assert not check(spec, allow_download=False).ok and "--allow-download" in check(spec, allow_download=False).reason
    with pytest.raises(UnavailableError, match="pass --allow-download"):
        load_encoder(spec, device="cpu", allow_download=False)
    cached = url_cache_path(url)
    assert cached.parent == tmp_path / "torch" / "hub" / "checkpoints" and cached.name.endswith("-checkpoint_teacher.pth")
    assert url_cache_path(url.replace("vit_tiny", "vit_small")).name != cached.name  # same file name, other release
    cached.parent.mkdir(parents=True)
    torch.save(released, cached)
    assert check(spec, allow_download=False).ok
    pixels = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        expected = model.forward_features(pixels)[:, 0].numpy()
    np.testing.assert_allclose(load_encoder(spec, device="cpu").encode(pixels), expected, atol=1e-5)
    # the same weights as a local file; a checkpoint for another arch is a one-line error naming the entry
    local = tmp_path / "mine.pth"
    torch.save(released, local)
    path = entry(tmp_path, body.replace(url, str(local)).replace("ssl/tiny", "ssl/local"))
    np.testing.assert_allclose(load_encoder(Registry.load([path]).get("ssl/local"), device="cpu").encode(pixels),
                               expected, atol=1e-5)
    wide = path.read_text().replace("embed_dim = 32, depth", "embed_dim = 48, depth").replace("embed_dim = 32\n",
                                                                                                  "embed_dim = 48\n")
    path.write_text(wide)
    with pytest.raises(ProbeError, match=r"do not fit timm arch 'vit_tiny_patch16_224'.*ssl/local"):
        load_encoder(Registry.load([path]).get("ssl/local"), device="cpu")


TEXT = 'modality = "text"\n[[model]]\nobjective = "contrastive"\nlicense = "MIT"\nreference = "x"\nparams_m = 1.0\n'


@pytest.mark.parametrize(("body", "message"), [
    ('requires = "einops"\n', "field 'requires' must be a list of pip requirements"),
    ('requires = ["einops >> 1"]\n', "requires: 'einops >> 1' is not a pip requirement"),
    ('model_kwargs = { use_cache = false }\n', "model_kwargs 'use_cache' is not one of config_kwargs"),
    ('model_kwargs = { config_kwargs = 3 }\n', "model_kwargs.config_kwargs must be a table"),
])
def test_text_entry_requirements_and_kwargs_are_checked(tmp_path, body, message):
    path = tmp_path / "text.toml"
    path.write_text(TEXT + 'name = "a/b"\nloader = "sentence-transformers"\nweights = "x/y"\nembed_dim = 8\n' + body)
    with pytest.raises(ProbeError, match=message):
        parse_registry_file(path)


def test_unmet_requirements_are_the_reason_an_entry_is_unavailable():
    """NV-Embed-v2's remote code needs a transformers that still has MISTRAL_INPUTS_DOCSTRING (< 4.52)."""
    import dataclasses
    from importlib import metadata

    from probe.encoders.loadable import check

    spec = Registry.load().get("nv-embed/v2")
    status = check(spec)
    installed = metadata.version("transformers")
    from packaging.version import Version

    if Version(installed) >= Version("4.52"):
        assert not status.ok and f"transformers>=4.42,<4.52 ({installed} installed)" in status.reason
    numpy = metadata.version("numpy")
    met = dataclasses.replace(Registry.load().get("sentence-transformers/all-minilm-l6-v2.pypi"),
                              requires=(f"numpy=={numpy}",))
    assert check(met).ok  # a met requirement leaves the answer to the family
    unmet = dataclasses.replace(met, requires=("numpy<1", "no-such-distribution"))
    assert check(unmet).reason.startswith(f"its code needs numpy<1 ({numpy} installed), no-such-distribution "
                                          "(not installed)")


def test_sentence_transformer_kwargs_reach_the_model_and_eos_is_appended():
    import dataclasses

    from probe.encoders import load_encoder

    base = Registry.load().get("sentence-transformers/all-minilm-l6-v2.pypi")
    plain = load_encoder(base, device="cpu")
    spec = dataclasses.replace(base, model_kwargs={"config_kwargs": {"use_cache": False},
                                                   "tokenizer_kwargs": {"eos_token": "[SEP]"}, "append_eos": True})
    tuned = load_encoder(spec, device="cpu")
    assert tuned.model[0].auto_model.config.use_cache is False
    assert tuned.prepare(["a dog"]) == ["a dog[SEP]"] and plain.prepare(["a dog"]) == ["a dog"]
    np.testing.assert_allclose(tuned.encode(["a dog"]), plain.encode(["a dog[SEP]"]), atol=1e-6)
    assert not np.allclose(tuned.encode(["a dog"]), plain.encode(["a dog"]), atol=1e-3)
