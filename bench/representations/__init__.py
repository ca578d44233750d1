"""Shape representations shared by all generative methods: ``voxel``, ``pca`` and ``ae``.

Typical use, with the training split only::

    rep = get_representation("pca", n_components=64).fit(train.volumes)
    latents = rep.encode(train.volumes)          # float32 (N, 64)
    volumes = rep.decode(samples)                # bool (N, R, R, R)
    floor = reconstruction_dice(rep, test.volumes).mean()
"""

from bench.representations.base import (REPRESENTATIONS, Representation, get_representation,
                                        reconstruction_dice, register_representation)
from bench.representations.ae import AutoencoderRepresentation
from bench.representations.pca import PCARepresentation
from bench.representations.voxel import VoxelRepresentation

__all__ = [
    "AutoencoderRepresentation",
    "REPRESENTATIONS",
    "PCARepresentation",
    "Representation",
    "VoxelRepresentation",
    "get_representation",
    "reconstruction_dice",
    "register_representation",
]
