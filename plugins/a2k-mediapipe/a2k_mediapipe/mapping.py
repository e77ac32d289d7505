"""MediaPipe's face mesh (468 vertices, 478 with the iris points) -> the iBUG 68-point layout.

Each of the 68 points is one mesh vertex or the mean of two neighbouring ones (at most 0.3 inter-ocular distances
apart on average). The table was chosen by measurement, not by eye: for every point, every vertex and every pair of
vertices was tried against dlib's 68 points on half of the shared faces and clip frames (split by identity), and the
one of least mean squared error, divided by the inter-ocular distance, was kept. Its error on the other half is in
the README (about 0.05 inter-ocular distances over the 68 points, 0.08 on the jaw line, 0.03 on the eyes and lips).
``benchmarks/mapping_error.py --fit`` reproduces the table and the numbers.
"""

from __future__ import annotations

import numpy as np

#: for each iBUG point 0..67, the mesh vertices whose mean it is
IBUG68_FROM_MESH: tuple[tuple[int, ...], ...] = (
    # jaw 0-16, from the face's right (the image's left) to its left
    (127,), (227, 234), (137, 177), (58, 132), (138, 172), (136,), (149, 150), (148, 176), (152,),
    (377, 400), (378,), (365,), (367, 397), (288, 361), (323, 361), (454,), (356,),
    # right brow 17-21
    (70, 156), (63,), (66, 105), (66, 107), (55, 107),
    # left brow 22-26
    (285, 336), (296, 336), (296, 334), (293,), (300,),
    # nose bridge 27-30 (30: the tip)
    (193, 417), (122, 419), (5, 195), (1, 5),
    # nose base 31-35
    (59, 75), (2, 240), (2,), (2, 305), (294, 328),
    # right eye 36-41 (36: outer corner)
    (7, 33), (159, 160), (157, 159), (155,), (144, 155), (144,),
    # left eye 42-47 (42: inner corner)
    (362, 382), (384, 385), (386, 387), (249, 263), (373,), (380,),
    # outer lip 48-59 (48: right corner)
    (57, 96), (39, 74), (37,), (37, 268), (267, 302), (269, 304), (291,), (321, 405), (17, 405), (84, 314),
    (17, 181), (91, 181),
    # inner lip 60-67
    (77, 184), (13, 80), (13,), (13, 271), (307, 408), (317,), (14,), (14, 88),
)  # fmt: skip

#: the mesh vertices the table reads: the 468 of both mesh models (the iris points 468-477 are not used)
MESH_POINTS = 468

_INDEX = np.array([ix if len(ix) == 2 else (ix[0], ix[0]) for ix in IBUG68_FROM_MESH])


def mesh_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    """68 points ``(68, C)`` from a mesh ``(V >= 468, C)`` (any columns: x, y and z are all averaged alike)."""
    mesh = np.asarray(mesh, np.float32)
    if mesh.ndim != 2 or mesh.shape[0] < MESH_POINTS:
        raise ValueError(f"a face mesh has at least {MESH_POINTS} vertices (V, C), got an array of shape {mesh.shape}")
    return (mesh[_INDEX[:, 0]] + mesh[_INDEX[:, 1]]) / 2
