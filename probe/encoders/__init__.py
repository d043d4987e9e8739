"""Load an encoder from its registry entry: ``load_encoder(spec) -> Encoder``.

Each loader family lives in its own module (see :mod:`probe.encoders.families`) and is imported
only when an entry of that family is loaded or asked about.
"""

from __future__ import annotations

from probe.encoder_spec import EncoderSpec
from probe.encoders.base import Encoder, TextEncoder, VisionEncoder, pick_device
from probe.encoders.loadable import check
from probe.errors import UnavailableError
from probe.settings import downloads_allowed

__all__ = ["Encoder", "TextEncoder", "VisionEncoder", "load_encoder", "pick_device"]


def load_encoder(spec: EncoderSpec, device: str | None = None, allow_download: bool | None = None) -> Encoder:
    """Load ``spec`` on ``device`` (CUDA when present, else CPU).

    Raises :class:`UnavailableError` naming the entry and what to do when its weights are not on
    this machine. Unless downloads are allowed (``allow_download``, else ``$PROBE_ALLOW_DOWNLOAD``),
    hub loaders read local files only, so nothing reaches for the network.
    """
    from probe.encoders.families import family_of

    allowed = downloads_allowed(allow_download)
    status = check(spec, allowed)
    if not status.ok:
        raise UnavailableError(f"model {spec.name!r} cannot be loaded here: {status.reason}")
    encoder = family_of(spec).load(spec, pick_device(device), allowed)
    if spec.read_layers:
        from probe.encoders.layers import check_layer, encoder_layers

        # one line for an encoder whose hidden layers probe cannot read, or a layer it does not have
        count = len(encoder_layers(encoder))
        for layer in spec.read_layers:
            check_layer(spec, layer, count)
    return encoder
