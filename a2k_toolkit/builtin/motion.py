"""Motion shared by the generators: scaling a keypoint sequence's head and mouth motion about its reference, and
blinks.

* :func:`rescale_motion` -- the ``head_motion`` / ``mouth_scale`` controls of ``audio2keypoint``;
* :func:`blink_schedule` and :func:`apply_blinks` -- eyelid closures at a natural rate (``procedural``'s blinks, and
  ``audio2keypoint``'s ``blink_interval``: a network trained with L1 averages the blinks of its training clips away).
"""

from __future__ import annotations

import numpy as np

BLOCK = 4096  # frames per block when processing long sequences (bounds the temporaries)
# iBUG-68 upper and lower eyelid points, (upper, lower) per eye
EYELIDS = (([37, 38], [41, 40]), ([43, 44], [47, 46]))
BLINK_SHAPE = (0.4, 0.85, 1.0, 0.85, 0.4)  # closure over the 5 frames of a blink (200 ms at 25 fps)


RIGID = slice(17, 48)  # brows, nose, eyes: they move with the head, not with speech
# the points the mouth scale moves: the lower jaw (it drops as the mouth opens) and the mouth
SPEECH_POINTS = np.r_[3:14, 48:68]
# points whose departure from the similarity pose is mostly the head's turn out of the image plane (the nose and the
# jaw's upper ends): the head scale scales that departure too, so a still head (0) has exactly the reference's nose
HEAD_POINTS = np.r_[0:3, 14:17, 27:36]


def rescale_motion(points: np.ndarray, reference: np.ndarray, head: float = 1.0, mouth: float = 1.0) -> np.ndarray:
    """Scale the motion of keypoints ``points (T, 68, 2)`` (in place) about the reference ``(68, 2)``.

    Each frame's head pose is the similarity ``z -> a z + b`` (complex numbers) that maps the reference's rigid points
    (brows, eyes, nose) onto the frame's. The frame is taken back to the reference's pose (its expression in the
    reference's frame: ``a^-1 (z - b)``), its mouth and lower jaw's departure from the reference's scaled by
    ``mouth``, and it is carried to the pose scaled by ``head``: about the reference's rigid centroid, translation
    times ``head``, rotation angle times ``head`` and scale to the power ``head``; the nose's and upper jaw's
    departure from that pose (turns out of the image plane) is scaled by ``head`` too. Eyes and brows keep their own
    motion (blinks, raised brows). ``head = mouth = 1`` leaves the points as they are (to float rounding)."""
    from .warp import similarity

    ref = np.asarray(reference, np.float64)
    zr = ref[:, 0] + 1j * ref[:, 1]
    c = zr[RIGID].mean()
    for i in range(0, len(points), BLOCK):
        blk = np.asarray(points[i : i + BLOCK], np.float64)
        a, b = similarity(ref[RIGID], blk[:, RIGID])
        z = blk[..., 0] + 1j * blk[..., 1]
        local = (z - b[:, None]) / a[:, None]  # the expression in the reference's frame
        local[:, SPEECH_POINTS] = zr[SPEECH_POINTS] + mouth * (local[:, SPEECH_POINTS] - zr[SPEECH_POINTS])
        local[:, HEAD_POINTS] = zr[HEAD_POINTS] + head * (local[:, HEAD_POINTS] - zr[HEAD_POINTS])
        t = a * c + b - c  # the rigid centroid's displacement
        a2 = np.exp(head * np.log(a))  # |a| ** head, angle * head (principal angle: |rotation| < 180 degrees)
        b2 = c + head * t - a2 * c
        z2 = a2[:, None] * local + b2[:, None]
        points[i : i + BLOCK] = np.stack([z2.real, z2.imag], -1)
    return points


def blink_schedule(num_frames: int, interval: float, fps: float, rng: np.random.Generator) -> np.ndarray:
    """``(num_frames,)`` eyelid closure in [0, 1]: blinks of 5 frames, the first after 0.5-1.5 x ``interval`` seconds,
    then every 0.6-1.4 x ``interval`` seconds (uniform draws from ``rng``); none in frame 0 (the reference)."""
    closing = np.zeros(num_frames)
    t = rng.uniform(0.5, 1.5) * interval * fps
    while t < num_frames:
        for k, v in zip(range(-2, 3), BLINK_SHAPE):
            if 0 < int(t) + k < num_frames:
                closing[int(t) + k] = max(closing[int(t) + k], v)
        t += rng.uniform(0.6, 1.4) * interval * fps
    return closing


def apply_blinks(points: np.ndarray, closing: np.ndarray, depth: float = 0.9) -> np.ndarray:
    """Move the upper eyelids of ``points (T, 68, 2)`` (in place) towards the lower ones by ``closing * depth`` of
    their gap."""
    for upper, lower in EYELIDS:
        gap = points[:, lower, :] - points[:, upper, :]
        points[:, upper, :] += gap * closing[:, None, None] * depth
    return points
