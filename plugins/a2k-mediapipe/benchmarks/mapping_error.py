"""Choose and measure the mesh -> iBUG 68 mapping against dlib's 68 points on the shared faces and clip frames.

    python plugins/a2k-mediapipe/benchmarks/mapping_error.py [--per-clip 8] [--cache samples.npz] [--fit]

For every shared face and a few frames of every shared clip (the one-word ``lrcar`` clips: the first of each
identity), both detectors run; a sample counts when both find a face and the mesh's nose lies within one
inter-ocular distance (IOD, dlib's) of dlib's. The samples are split by identity into a fit half and a report half
(``shared_inputs.is_fit``). The error of a point is its distance to dlib's point divided by dlib's IOD.

``--fit`` chooses, on the fit half only, the mesh vertex or the mean of two vertices that minimises the mean squared
error of each of the 68 points (every single vertex and every pair of the 468 mesh vertices is tried), and prints it
as the Python table of ``a2k_mediapipe/mapping.py``. Without ``--fit`` the table in the package is measured. Either
way the error is reported per facial part on both halves, for the still faces and the clip frames apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared_inputs import (  # noqa: E402
    REPO,
    is_fit,
    load_clip_samples,
    load_faces,
    mapping_clips,
    shared_data,
)

from a2k_toolkit.keypoints import PARTS, interocular  # noqa: E402

MESH_VERTICES = 468  # the vertices both mesh models have (the attention model adds 10 iris points)
OUTLIER_NME = 0.25  # a sample whose mean error under the first guess exceeds this is a failure of one detector


def collect(per_clip: int) -> dict[str, np.ndarray]:
    from a2k_mediapipe import MediapipeDetector
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    dlib = Catalog(make_plugin_manager(entry_points=False)).build("detector", "dlib")
    mp = MediapipeDetector()
    keys, ids, dl, me, kinds = [], [], [], [], []
    skipped = {"dlib": 0, "mediapipe": 0, "mismatch": 0}
    samples = [*load_faces(), *load_clip_samples(mapping_clips(), per_clip)]
    for s in samples:
        d = dlib.detect_all(s.image)
        if not d:
            skipped["dlib"] += 1
            continue
        m = mp.meshes(s.image)
        if not m:
            skipped["mediapipe"] += 1
            continue
        iod = float(interocular(d[0]))
        # the mesh whose nose tip (vertex 1) is nearest dlib's (point 30)
        best = min(m, key=lambda x: np.linalg.norm(x[1, :2] - d[0][30]))
        if np.linalg.norm(best[1, :2] - d[0][30]) > iod:
            skipped["mismatch"] += 1
            continue
        keys.append(s.key)
        ids.append(s.identity)
        kinds.append("face" if s.key.startswith("faces/") else "clip")
        dl.append(d[0])
        me.append(best[:MESH_VERTICES, :2])
    print(f"{len(samples)} samples, {len(keys)} with both detectors; skipped: {skipped}")
    return {
        "keys": np.array(keys),
        "identity": np.array(ids),
        "kind": np.array(kinds),
        "dlib": np.stack(dl).astype(np.float32),
        "mesh": np.stack(me).astype(np.float32),
    }


def mapped(mesh: np.ndarray, table) -> np.ndarray:
    return np.stack([mesh[:, list(ix)].mean(1) for ix in table], axis=1)


def errors(data: dict, table) -> np.ndarray:
    """``(N, 68)`` distance to dlib / dlib's IOD."""
    iod = interocular(data["dlib"].astype(np.float64))
    return np.linalg.norm(mapped(data["mesh"].astype(np.float64), table) - data["dlib"], axis=-1) / iod[:, None]


def nearest_table(data: dict) -> list[tuple[int]]:
    """The first guess: for each dlib point, the vertex nearest it on average (both normalised by IOD)."""
    iod = interocular(data["dlib"].astype(np.float64))[:, None, None]
    nose = data["dlib"][:, 30:31].astype(np.float64)
    m = (data["mesh"] - nose) / iod
    d = (data["dlib"] - nose) / iod
    dist = np.linalg.norm(m[:, None] - d[:, :, None], axis=-1).mean(0)  # (68, 468)
    return [(int(i),) for i in dist.argmin(1)]


def vertex_gaps(data: dict) -> np.ndarray:
    """``(V, V)`` mean distance between two mesh vertices, in IOD."""
    iod = interocular(data["dlib"].astype(np.float64))[:, None, None]
    m = data["mesh"].astype(np.float64) / iod
    return np.linalg.norm(m[:, :, None] - m[:, None, :], axis=-1).mean(0)


def fit(data: dict, pairs: bool = True, max_gap: float | None = None) -> list[tuple[int, ...]]:
    """Per dlib point, the vertex or vertex pair (mean of two, at most ``max_gap`` IOD apart on average) of least
    mean squared normalised error."""
    iod = interocular(data["dlib"].astype(np.float64))
    mesh = data["mesh"].astype(np.float64)
    table = []
    iu = np.triu_indices(MESH_VERTICES)
    far = vertex_gaps(data) > max_gap if max_gap is not None else np.zeros((MESH_VERTICES,) * 2, bool)
    for k in range(68):
        e = (mesh - data["dlib"][:, k : k + 1].astype(np.float64)) / iod[:, None, None]  # (N, V, 2)
        flat = e.transpose(1, 0, 2).reshape(MESH_VERTICES, -1)
        gram = flat @ flat.T / len(e)  # (V, V): mean of e_i . e_j
        diag = np.diag(gram)
        if pairs:
            cost = (diag[:, None] + diag[None, :] + 2 * gram) / 4  # mean squared error of (v_i + v_j) / 2
            cost[far] = np.inf
            i, j = iu[0], iu[1]
            best = int(np.argmin(cost[i, j]))
            a, b = int(i[best]), int(j[best])
            table.append((a,) if a == b else (a, b))
        else:
            table.append((int(np.argmin(diag)),))
    return table


def subset(data: dict, mask: np.ndarray) -> dict:
    return {k: v[mask] for k, v in data.items()}


def report(data: dict, table, title: str) -> None:
    err = errors(data, table)
    print(f"\n{title}: mean error / IOD per part (median in brackets)")
    head = ["part", *(f"{name} (n={int(n)})" for name, n in _columns(data))]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for part, idx in [*PARTS.items(), ("all 68", range(68))]:
        cells = [part]
        for _, mask in _masks(data):
            e = err[mask][:, list(idx)]
            cells.append(f"{e.mean():.3f} ({np.median(e):.3f})" if len(e) else "-")
        print("| " + " | ".join(cells) + " |")


def _masks(data: dict):
    fit_mask = np.array([is_fit(i) for i in data["identity"]])
    face = data["kind"] == "face"
    return [
        ("fit: faces", fit_mask & face),
        ("fit: clip frames", fit_mask & ~face),
        ("report: faces", ~fit_mask & face),
        ("report: clip frames", ~fit_mask & ~face),
        ("report: all", ~fit_mask),
    ]


def _columns(data: dict):
    return [(name, mask.sum()) for name, mask in _masks(data)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-clip", type=int, default=8, help="frames per clip (2 per lrcar identity)")
    ap.add_argument("--cache", type=Path, help="npz file to keep the detections in (read when it exists)")
    ap.add_argument("--fit", action="store_true", help="choose the table on the fit half (else: measure the package's)")
    ap.add_argument(
        "--max-gap", type=float, default=0.3, help="pair only vertices at most this far apart on average (IOD)"
    )
    args = ap.parse_args(argv)
    if not (shared_data() / "faces").is_dir():
        sys.exit(f"no shared data at {shared_data()} (set A2K_SHARED_DATA)")
    t0 = time.time()
    if args.cache and args.cache.is_file():
        data = dict(np.load(args.cache))
    else:
        data = collect(args.per_clip)
        if args.cache:
            np.savez(args.cache, **data)
    print(f"{len(data['keys'])} samples ({time.time() - t0:.0f} s); shared data read from {_rel(shared_data())}")
    fit_mask = np.array([is_fit(i) for i in data["identity"]])
    guess = nearest_table(subset(data, fit_mask))
    keep = errors(data, guess).mean(1) <= OUTLIER_NME
    print(f"left out as failures of one detector (mean error > {OUTLIER_NME} IOD): {int((~keep).sum())}")
    for k in data["keys"][~keep]:
        print(f"  {k}")
    data = subset(data, keep)
    fit_mask = np.array([is_fit(i) for i in data["identity"]])
    if args.fit:
        table = fit(subset(data, fit_mask), max_gap=args.max_gap)
        singles = fit(subset(data, fit_mask), pairs=False)
        report(data, guess, "first guess (nearest vertex on average)")
        report(data, singles, "best single vertex per point")
        report(data, table, "chosen: best vertex or pair of vertices per point")
        print("\nIBUG68_FROM_MESH = (")
        for part, idx in PARTS.items():
            print(f"    # {part}")
            print("    " + " ".join(f"{table[i]!r}," for i in idx))
        print(")")
    else:
        from a2k_mediapipe import IBUG68_FROM_MESH

        report(data, IBUG68_FROM_MESH, "the package's table")


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO.parent))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    main()
