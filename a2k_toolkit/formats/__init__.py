"""Keypoint file formats for downstream tools, both directions where it makes sense.

=============  ==========================  =====  ==================================================================
name           forms                       dir.   what
=============  ==========================  =====  ==================================================================
npy            ``.npy``                    r/w    plain float32 array (the toolkit's own, :mod:`a2k_toolkit.io`)
npz            ``.npz``                    r/w    array + fps, image size, layout, meta
json           ``.json``                   r/w    the documented a2k keypoints JSON (:mod:`.native`)
openpose       folder, ``.json``           r/w    OpenPose face JSON per frame, 70 points with pupils
pose-images    folder (PNG), ``.mp4``      w      OpenPose-style face pose images for ControlNet / DWPose
openface       ``.csv``                    r/w    OpenFace 2.0 FeatureExtraction columns
pts            ``.pts``, folder            r/w    iBUG 300-W landmark files
=============  ==========================  =====  ==================================================================

Plugins add formats through the ``register_keypoint_formats`` hook (the a2k-mediapipe plugin: ``mediapipe``, read
only); a host hands its plugin manager over with ``add_plugin_formats(pm)`` (:mod:`.table`).

``read(path)`` and ``write(path, keypoints)`` infer the format from the path; ``FORMATS`` is the table. This package
sits beside :mod:`a2k_toolkit.io`: it imports only the keypoint type, errors and io.
"""

from __future__ import annotations

from .registry import (
    check_output,
    input_format,
    output_extensions,
    output_format,
    read,
    staged,
    staged_write,
    write,
)
from .table import (
    BY_EXTENSION,
    DEFAULT_FOLDER_FORMAT,
    FORMATS,
    Format,
    add_plugin_formats,
    get_format,
    plugin_formats,
    plugin_formats_added,
)

__all__ = [
    "BY_EXTENSION",
    "DEFAULT_FOLDER_FORMAT",
    "FORMATS",
    "Format",
    "add_plugin_formats",
    "check_output",
    "get_format",
    "input_format",
    "output_extensions",
    "output_format",
    "plugin_formats",
    "plugin_formats_added",
    "read",
    "staged",
    "staged_write",
    "write",
]
