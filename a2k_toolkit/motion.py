"""Keypoint motion shared by the generators and their runtimes (a public module: docs/architecture.md): the
post-processing that turns a network's keypoints into the generated sequence, and the motion the training-free
baseline makes. numpy (and scipy) only: no torch, so runtimes without PyTorch (the ONNX plugin) use it as it is.

* :func:`finish_sequence` -- a keypoint network's whole output path (the anchor, denormalising, the kept mouth shape,
  frame 0 pinned, then :func:`post_process`), which ``audio2keypoint`` and the ONNX runtime both call;
* :func:`post_process` -- ``audio2keypoint``'s steps after the network, in order: the silence gate
  (:func:`close_mouth_in_silence`), the head and mouth scales (:func:`rescale_motion`), the energy mouth
  (:func:`add_jaw_drop` of :func:`loudness_opening`) and blinks (:func:`blink_schedule`, :func:`apply_blinks`);
  :func:`anchor_start` pins frame 0 to the reference before them and :func:`hold_mouth_shape` keeps the
  reference's mouth shape;
* :func:`speech_activity`, :func:`loudness_opening` and :func:`jaw_drop_offsets` -- the jaw drop that follows the
  speech's loudness (``procedural``'s mouth, and ``audio2keypoint``'s ``energy_mouth``);
* :func:`voice_activity` -- speech against silence, for the silence gate;
* the point groups of the head pose (:data:`RIGID`, :data:`HEAD_POINTS`) and of speech (:data:`SPEECH_POINTS`).

A frame's head pose is the similarity (:func:`~a2k_toolkit.keypoints.similarity`) that maps the reference's rigid
points onto the frame's.
"""

from __future__ import annotations

import numpy as np

from .keypoints import apply_similarity, face_scale, similarity

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


# procedural's jaw drop: (points, share of the drop), y down; the upper inner lip rises a little
JAW_DROP = (
    ([55, 56, 57, 58, 59, 64, 65, 66, 67], 1.0),  # lower lip
    ([6, 7, 8, 9, 10], 0.7),  # chin
    ([4, 5, 11, 12], 0.35),  # lower jaw
    ([61, 62, 63], -0.15),  # upper inner lip
)
JAW_DROP_UNIT = 0.25  # the drop at opening 1 and mouth_open 1, in units of face size (keypoints.face_scale)
ENERGY_MOUTH_OPEN = 0.35  # procedural's default jaw drop (its mouth_open): the unit of audio2keypoint's energy_mouth


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (edges: nearest); ``sigma <= 0`` or fewer than 2 frames: ``x`` unchanged."""
    if sigma <= 0 or len(x) < 2:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x, sigma, axis=0, mode="nearest")


def speech_activity(features: np.ndarray) -> np.ndarray:
    """A loudness proxy in [0, 1] per frame: the mean feature value, robustly rescaled over the clip (its 10th to
    97th percentile; made for log-power features such as logmel)."""
    return activity_of_loudness(features.mean(axis=1))


def activity_of_loudness(e: np.ndarray) -> np.ndarray:
    """:func:`speech_activity` of the frames' mean feature values ``e`` ``(T,)`` (``features.mean(axis=1)``)."""
    lo, hi = np.percentile(e, (10, 97))
    if hi - lo < 1e-6:
        return np.zeros_like(e)
    return np.clip((e - lo) / (hi - lo), 0.0, 1.0)


def lead(activity: np.ndarray, lead_frames: int) -> np.ndarray:
    """``activity`` ``(T, ...)`` moved ``lead_frames`` earlier (the lips move before the sound), its last value
    held at the end."""
    n = len(activity)
    return np.concatenate([activity[lead_frames:], np.repeat(activity[-1:], min(lead_frames, n), 0)])[:n]


def opening_of(led_activity: np.ndarray) -> np.ndarray:
    """The mouth opening in [0, 1] of an already led speech activity: smoothed over 0.8 frames, to the power 1.5
    (small sounds open it little)."""
    return smooth(led_activity, 0.8) ** 1.5


def lead_and_open(activity: np.ndarray, lead_frames: int) -> np.ndarray:
    """The mouth opening in [0, 1] of a speech ``activity`` ``(T,)``: :func:`lead`, then :func:`opening_of`."""
    return opening_of(lead(activity, lead_frames))


def loudness_opening(features: np.ndarray, lead_frames: int = 1) -> np.ndarray:
    """``procedural``'s mouth opening ``(T,)`` in [0, 1] from log-power features ``(T, D)``; frame 0 (the
    reference) is 0."""
    opening = lead_and_open(speech_activity(features), lead_frames)
    if len(opening):
        opening[0] = 0.0
    return opening


def jaw_drop_offsets(drop: np.ndarray) -> np.ndarray:
    """Offsets ``(T, 68, 2)`` float64 of a jaw drop of ``drop`` ``(T,)`` pixels, in the face's upright frame (each
    share multiplied in ``drop``'s own precision)."""
    drop = np.asarray(drop)
    out = np.zeros((len(drop), 68, 2))
    for idx, share in JAW_DROP:
        out[:, idx, 1] = share * drop[:, None]
    return out


def add_jaw_drop(points: np.ndarray, reference: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Add a jaw drop of ``drop`` ``(T,)`` pixels (in the reference's frame) to ``points (T, 68, 2)``, in place,
    carried to each frame's head pose (rotated and scaled by the similarity that maps the reference's brows, eyes and
    nose onto the frame's)."""
    ref = np.asarray(reference, np.float64)
    for i in range(0, len(points), BLOCK):
        d = np.asarray(drop[i : i + BLOCK], np.float64)
        t = np.flatnonzero(d != 0)
        if len(t) == 0:
            continue
        a, _ = similarity(ref[RIGID], np.asarray(points[i + t, RIGID], np.float64))
        off = jaw_drop_offsets(d[t])
        z = a[:, None] * (off[..., 0] + 1j * off[..., 1])
        points[i + t] += np.stack([z.real, z.imag], -1).astype(points.dtype)
    return points


# inner-lip pairs (upper, lower) whose gap meet_lips keeps from going negative, and the lower lip it moves
LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
LOWER_LIP = np.array([55, 56, 57, 58, 59, 65, 66, 67])


def meet_lips(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Lips that meet rather than pass through each other, on ``points (T, 68, 2)`` (in place): in each frame's head
    frame (the similarity of the reference's brows, eyes and nose), the inner lips' gaps along the face's downward
    axis (the reference's nose bridge 27 to chin 8) at the pairs 61-67, 62-66 and 63-65; where the smallest is
    negative (the lower lip above the upper: scaled or shifted mouths can get there), the lower lip (55-59, 65-67)
    moves down by it, so the lips just touch. Frames whose lips do not cross are left as they are."""
    ref = np.asarray(reference, np.float64)
    down = ref[8] - ref[27]
    u = (down[0] + 1j * down[1]) / max(float(np.hypot(*down)), 1e-9)
    for i in range(0, len(points), BLOCK):
        blk = np.asarray(points[i : i + BLOCK], np.float64)
        a, b = similarity(ref[RIGID], blk[:, RIGID])
        z = blk[..., 0] + 1j * blk[..., 1]
        local = (z - b[:, None]) / a[:, None]
        gap = np.min([((local[:, lo] - local[:, up]) * np.conj(u)).real for up, lo in LIP_PAIRS], axis=0)
        t = np.flatnonzero(gap < 0)
        if len(t) == 0:
            continue
        moved = local[np.ix_(t, LOWER_LIP)] - gap[t, None] * u
        z2 = a[t, None] * moved + b[t, None]
        points[i + t[:, None], LOWER_LIP[None]] = np.stack([z2.real, z2.imag], -1).astype(points.dtype)
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


def voice_activity(features: np.ndarray, gate_db: float) -> np.ndarray:
    """Per frame, 1 where there is speech and 0 in silence, from log-power features ``(T, sub * bands)`` in dB: a
    frame's loudness is the power mean over its sub-frames and bands; frames within ``gate_db`` of the clip's speech
    level (the 95th percentile of loudness) are speech, ``gate_db + 6`` below it silence, linear between; then widened
    by 2 frames each side (word onsets and the lips' lead over the sound) and smoothed over 3 frames."""
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    T = len(features)
    power = np.power(10.0, np.asarray(features, np.float64).reshape(T, -1) / 10.0).mean(1)
    loud = 10.0 * np.log10(np.maximum(power, 1e-12))
    level = np.percentile(loud, 95)
    active = np.clip((loud - (level - gate_db - 6.0)) / 6.0, 0.0, 1.0)
    active = maximum_filter1d(active, size=5, mode="nearest")
    active = uniform_filter1d(active, size=3, mode="nearest")
    return np.where(active < 1e-6, 0.0, np.where(active > 1 - 1e-6, 1.0, active))  # exact 0 and 1, not 1e-17 off


def close_mouth_in_silence(
    points: np.ndarray, reference: np.ndarray, features: np.ndarray, gate_db: float, weight: np.ndarray | None = None
) -> np.ndarray:
    """Blend each frame's mouth (points 48-67 of ``points (T, 68, 2)``, in place) towards the reference's mouth,
    carried to the frame's head pose by the similarity that maps the reference's brows, eyes and nose onto the frame's,
    with weight ``1 - voice_activity`` (``weight``: that activity, if already computed)."""
    weight = voice_activity(features, gate_db) if weight is None else weight
    rigid = np.asarray(reference[RIGID], np.float64)
    for i in range(0, len(points), BLOCK):  # all quiet frames of a block at once
        t = i + np.flatnonzero(weight[i : i + BLOCK] < 1.0)
        if len(t) == 0:
            continue
        a, b = similarity(rigid, np.asarray(points[t, RIGID], np.float64))
        rest = apply_similarity(reference[48:68], a, b)
        w = weight[t, None, None]
        points[t, 48:68] = w * points[t, 48:68] + (1.0 - w) * rest
    return points


def anchor_start(out: np.ndarray, reference: np.ndarray, frames: int, copy: bool = True) -> np.ndarray:
    """Pin frame 0 to ``reference``: add ``reference - out[0]`` with a weight falling linearly from 1 at frame 0 to 0
    at frame ``frames`` (the paper uses the reference image as the first frame; the model learns to start close to
    it, and this removes the residual offset without a jump). ``copy=False`` changes ``out`` in place."""
    out = out.copy() if copy else out
    n = min(len(out), max(frames, 1))
    w = 1.0 - np.arange(n) / max(frames, 1)
    out[:n] += w[:, None] * (reference - out[0])[None]
    return out


def mouth_shape_offset(reference: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``(20, 2)`` float64: the offset of the reference's mouth (points 48-67) from ``first``'s beyond the nose
    tip's, ``(reference - first)[48:68] - (reference - first)[30]``. With ``first`` the network's own frame 0, it is
    the error of the network's mouth shape for this face (a new person's lips are drawn towards the training
    faces')."""
    off = np.asarray(reference, np.float64) - np.asarray(first, np.float64)
    return off[48:68] - off[30]


def hold_weight(t: np.ndarray, frames: int) -> np.ndarray:
    """``keep_mouth_shape``'s weight on frames ``t``: ``clip(t / frames, 0, 1)``, ``1 -`` :func:`anchor_start`'s."""
    return np.clip(np.asarray(t, np.float64) / max(frames, 1), 0.0, 1.0)


def hold_mouth_shape(
    points: np.ndarray, reference: np.ndarray, first: np.ndarray, frames: int, keep: float = 1.0, start: int = 0
) -> np.ndarray:
    """Keep the reference's mouth shape (``keep_mouth_shape``), on frames ``start, start + 1, ...`` of ``points
    (n, 68, 2)`` after :func:`anchor_start` (in place).

    ``first`` ``(68, 2)`` is the network's own frame 0 before the anchor: the anchor corrects its
    :func:`mouth_shape_offset` on frame 0 and fades it out over ``frames``; this keeps ``keep`` times it on the later
    frames with :func:`hold_weight`, so frame 0 stays the reference and the ramp has no seam."""
    return add_mouth_offset(points, mouth_shape_offset(reference, first), frames, keep, start)


def add_mouth_offset(
    points: np.ndarray, offset: np.ndarray, frames: int, keep: float = 1.0, start: int = 0
) -> np.ndarray:
    """Add ``keep`` times :func:`hold_weight` times ``offset`` to the mouth points (48-67) of frames ``start, start +
    1, ...`` of ``points (n, 68, 2)`` (in place): ``offset`` is one ``(20, 2)`` :func:`mouth_shape_offset` for every
    frame (:func:`hold_mouth_shape`) or one per frame, ``(n, 20, 2)`` (a stream's, whose estimate improves as the
    audio arrives)."""
    if keep == 0 or len(points) == 0:
        return points
    w = hold_weight(start + np.arange(len(points)), frames)
    offset = np.asarray(offset, np.float64)
    held = offset[None] if offset.ndim == 2 else offset
    points[:, 48:68] += (keep * w[:, None, None] * held).astype(points.dtype)
    return points


def energy_drop(reference: np.ndarray, energy_mouth: float) -> float:
    """The energy mouth's jaw drop at full loudness, in pixels of the reference ``(68, 2)``: ``energy_mouth`` times
    ``procedural``'s default (:data:`ENERGY_MOUTH_OPEN`)."""
    return float(energy_mouth) * ENERGY_MOUTH_OPEN * JAW_DROP_UNIT * float(face_scale(reference))


# the post-processing params that read loudness off log-power features, each with how to turn it off (the fix an
# error names when a model's front-end is not log power)
LOUDNESS_PARAMS = {"silence_gate_db": "remove silence_gate_db", "energy_mouth": "set energy_mouth 0"}


def loudness_param(silence_gate_db: float | None, energy_mouth: float) -> str | None:
    """The first post-processing param that is on and reads loudness (a key of :data:`LOUDNESS_PARAMS`), or None."""
    if silence_gate_db is not None:
        return "silence_gate_db"
    return "energy_mouth" if energy_mouth > 0 else None


def post_process(
    points: np.ndarray,
    reference: np.ndarray,
    features: np.ndarray,
    *,
    fps: float,
    seed: int | None = None,
    silence_gate_db: float | None = None,
    head_motion: float = 1.0,
    mouth_scale: float = 1.0,
    energy_mouth: float = 0.0,
    blink_interval: float = 0.0,
    lip_contact: bool = False,
) -> np.ndarray:
    """``audio2keypoint``'s motion steps on ``points (T, 68, 2)`` (in place; frame 0 is the ``reference (68, 2)``),
    from the clip's ``features (T, D)``: the silence gate (``silence_gate_db``), the head and mouth scales, the
    energy mouth (its jaw drop gated as the mouth is), lips that meet rather than cross (``lip_contact``) and the
    blinks (drawn from ``seed``, 0 when None), each only when it is on."""
    active = None
    if silence_gate_db is not None:
        active = voice_activity(features, silence_gate_db)
        close_mouth_in_silence(points, reference, features, silence_gate_db, weight=active)
    if head_motion != 1.0 or mouth_scale != 1.0:
        rescale_motion(points, reference, head_motion, mouth_scale)
    if energy_mouth > 0:
        drop = loudness_opening(features) * energy_drop(reference, energy_mouth)
        add_jaw_drop(points, reference, drop if active is None else drop * active)
    if lip_contact:
        meet_lips(points, reference)
    if blink_interval > 0:
        rng = np.random.default_rng(0 if seed is None else seed)
        apply_blinks(points, blink_schedule(len(points), blink_interval, fps, rng))
    return points


def finish_sequence(
    out: np.ndarray,
    reference: np.ndarray,
    reference_normalized: np.ndarray,
    features: np.ndarray,
    normalizer,
    *,
    fps: float,
    anchor_frames: int,
    keep_mouth_shape: float = 0.0,
    mouth_offset: np.ndarray | None = None,
    seed: int | None = None,
    **motion,
) -> np.ndarray:
    """The keypoints ``(T, 68, 2)`` float32 of a network's normalised output ``out (T, 136)`` float32 (reused as
    their buffer) for ``reference (68, 2)``: :func:`anchor_start` on the normalised rows (towards
    ``reference_normalized (136,)``), denormalised by ``normalizer`` (anything with ``denormalize(rows, reference)``,
    as :class:`~a2k_toolkit.keypoints.Normalizer`) in blocks of :data:`BLOCK` frames (so an hour of keypoints needs one
    array, not four), :func:`hold_mouth_shape` from the network's own frame 0 when ``keep_mouth_shape`` is on,
    ``mouth_offset (20, 2)`` (the mouth prior's, in pixels) added with the same ramp (:func:`add_mouth_offset`),
    frame 0 set to the reference, then :func:`post_process` with ``motion`` (its keyword params) from ``features (T,
    D)``."""
    first = normalizer.denormalize(out[:1], reference)[0] if keep_mouth_shape else None
    out = anchor_start(out, reference_normalized, anchor_frames, copy=False)
    pts = out.reshape(len(out), 68, 2)
    for i in range(0, len(out), BLOCK):  # each block is read before it is overwritten
        pts[i : i + BLOCK] = normalizer.denormalize(out[i : i + BLOCK], reference)
    if first is not None:
        hold_mouth_shape(pts, reference, first, anchor_frames, keep_mouth_shape)
    if mouth_offset is not None:
        add_mouth_offset(pts, mouth_offset, anchor_frames)
    pts[0] = reference
    return post_process(pts, reference, features, fps=fps, seed=seed, **motion)
