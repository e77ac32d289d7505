"""The params of the ``audio2keypoint`` generator
(:class:`~a2k_toolkit.builtin.audio2keypoint.Audio2KeypointGenerator`): which weights, how its windows run, and the
motion steps after the network (docs/model.md has the table)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..components import Params, path_field


class Audio2KeypointParams(Params):
    checkpoint: str | list[str] | None = path_field(
        None,
        description="checkpoint directory or run directory from `a2k train`, an ensemble directory "
        "(ensemble.json), or a list of checkpoint / run directories whose predictions are averaged (models of "
        "one recipe, e.g. several seeds); null = the shipped default",
    )
    width: int | None = Field(None, ge=4, description="expected UNet width; null = the checkpoint's")
    depth: int | None = Field(None, ge=1, description="expected temporal depth; null = the checkpoint's")
    overlap: int = Field(16, ge=0, description="frames shared (and cross-faded) by consecutive windows")
    batch_size: int = Field(32, ge=1, description="windows per forward pass (bounds memory)")
    anchor_frames: int = Field(
        8, ge=0, description="frames over which the offset that pins frame 0 to the reference fades out"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast precision for inference")
    fast: bool = Field(
        True,
        description="fused conv/norm/activation blocks and, on a CPU, windows spread over worker threads "
        "(same outputs to float32 rounding); false = the straightforward path",
    )
    silence_gate_db: float | None = Field(
        None,
        gt=0,
        description="close the mouth in silence: frames quieter than the clip's speech level (its 95th loudness "
        "percentile) by more than this many dB get the reference's mouth, carried to the frame's head pose, with "
        "soft edges (e.g. 25); null = off (the model's own mouth everywhere). Needs a log-power front-end "
        "(logmel, librosa-mel)",
    )
    head_motion: float | None = Field(
        None,
        ge=0,
        le=4,
        description="head motion scale: each frame's head pose relative to the reference (the similarity that "
        "maps the reference's brows, eyes and nose onto the frame's: translation, rotation, scale) scaled by this; "
        "0 = a still head, 1 = as generated, > 1 livelier; null = the model's default (an ensemble directory's "
        "`defaults`, else 1)",
    )
    blink_interval: float | None = Field(
        None,
        ge=0,
        le=60,
        description="blinks: mean seconds between eyelid closures added to the network's output (it averages "
        "the blinks of its training clips away); 0 = none; null = the model's default (else none). The blink "
        "times come from the generation seed (0 when none is given)",
    )
    mouth_scale: float | None = Field(
        None,
        ge=0,
        le=3,
        description="mouth and jaw motion scale: in the head's frame, the mouth and lower-jaw points' departure "
        "from the reference's, scaled by this; 0 = the reference's mouth, 1 = as generated; null = the model's "
        "default (else 1)",
    )
    energy_mouth: float | None = Field(
        None,
        ge=0,
        le=3,
        description="add the procedural baseline's jaw drop, which follows the speech's loudness (its 10th-97th "
        "percentile over the clip), times this, to the network's mouth, carried to each frame's head pose; 0 = "
        "the network's mouth only, 1 = as much as procedural's own; null = the model's default (else 0). Needs a "
        "log-power front-end (logmel, librosa-mel)",
    )
    keep_mouth_shape: float | None = Field(
        None,
        ge=0,
        le=1,
        description="keep the reference's mouth shape: the network's mouth error on frame 0 (its offset from the "
        "reference's beyond the nose tip's: lips drawn towards the training faces'), which the anchor corrects and "
        "fades out, stays corrected on every frame, times this; 0 = faded out with the anchor, 1 = kept in full; "
        "null = the model's default (else 0)",
    )
    mouth_prior: float | None = Field(
        None,
        ge=0,
        le=2,
        description="move the mouth towards where a talking mouth sits on average for this reference: the mouth "
        "prior's offset (a2k_toolkit/mouth_prior.py: fitted on talking-face clips, from the photo's mouth to the mean "
        "of the mouth over speech, relative to the nose tip) times this, added to every frame after frame 0 with the "
        "anchor's ramp; 0 = off; null = the model's default (else 0). Needs a prior: `mouth_prior_file`, else the "
        "checkpoint's",
    )
    mouth_prior_file: str | None = path_field(
        None,
        description="the mouth prior to use (a file from `a2k mouth-prior`, or a directory holding "
        "mouth_prior.safetensors); null = the checkpoint's (an ensemble directory's mouth_prior.safetensors)",
    )
    lip_contact: bool = Field(
        True,
        description="lips that meet rather than pass through each other: where the generated lower inner lip is "
        "above the upper one (in the head's frame, along the face's downward axis), the lower lip moves down to "
        "touch it; false = as generated",
    )
