"""Import a folder of real skull scans as a cached :class:`SkullDataset`.

    bench data import PATH --format nrrd|nifti|stl|ply|obj|npy --resolution R --name NAME

Every file is one subject, its id the file name without the extension (the
folder is not searched recursively; hidden files are ignored). Files are read
one at a time and each goes through the same steps, all recorded with their
parameters in the manifest:

1. read and binarise: arrays whose values are all 0 or 1 are masks; any other
   array is CT in Hounsfield units with bone where ``value >= threshold_hu``.
   Meshes are filled: voxel centres inside the closed surface are bone.
2. drop connected components (26-neighbourhood) smaller than
   ``min_component_fraction`` of the bone; the largest is always kept.
3. crop to the bone, so the later steps see only its bounding box.
4. align (optional): ``"principal"`` or ``"landmarks"``, see :func:`import_folder`.
5. centre the bone's bounding box at the origin, snapped by at most half a
   voxel so that the box starts on a voxel boundary of the common grid: a
   volume already on a grid of the target voxel size is imported without loss.
6. resample into the common grid (:mod:`bench.data.grid`) at the file's own
   voxel spacing, so physical size is kept: the occupancy is averaged over
   blocks of whole source voxels per target voxel, interpolated trilinearly
   and thresholded at 0.5. A bone larger than the field of view is a bad
   file.

Formats and the frame their coordinates are in (the "file frame", in which
landmarks are given):

- ``nrrd`` (.nrrd, .nhdr; pynrrd): voxel spacing and orientation from
  'space directions' (or 'spacings'), 'space origin'; a named 'space' such as
  left-posterior-superior is converted to RAS, other spaces are taken as RAS.
- ``nifti`` (.nii, .nii.gz; nibabel): the image affine (RAS, mm).
- ``stl``, ``ply``, ``obj`` (trimesh): closed triangle surfaces in mm, RAS.
- ``npy``: a 3-D array plus a sidecar ``<stem>.json`` holding
  ``{"spacing_mm": [sx, sy, sz]}``; voxel (i, j, k) is at (i sx, j sy, k sz) mm
  and the array axes are taken as RAS.
"""

from bench.data.importing.folder import ImportResult, import_folder
from bench.data.importing.readers import EXTENSIONS

__all__ = ["EXTENSIONS", "ImportResult", "import_folder"]
