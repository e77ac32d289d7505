"""File input and output in one import: ``from a2k_toolkit.io import load_image, write_video, ...``.

The names are defined, one concern per module, in

* :mod:`a2k_toolkit.files`: atomic writes (:func:`atomic_path`, :func:`atomic_paths`, :func:`atomic_folder`), the
  temporaries of killed runs, and output checks made before any work (:func:`check_output_path`,
  :func:`check_output_folder`);
* :mod:`a2k_toolkit.ffmpeg`: the ffmpeg binary and child processes that cannot outlive this one;
* :mod:`a2k_toolkit.audio`: decode any audio or video file to mono float32, resample, write WAV;
* :mod:`a2k_toolkit.images`: load and save images;
* :mod:`a2k_toolkit.video`: encode H.264 + AAC MP4 (streamed, atomic), probe media, decode frames;
* :mod:`a2k_toolkit.keypoint_files`: the keypoint file reader and writer (``.npy``, ``.npz``, ``.json``).

This module only gathers them (it defines nothing), and nothing those modules import imports it, so it sits at the
top of the I/O layer (docs/architecture.md). Plugins and integrations import I/O names from here.
"""

from __future__ import annotations

from .audio import SilentAudioWarning, load_audio, parse_wav_bytes, probe_audio, resample, write_wav
from .ffmpeg import child_argv, ffmpeg_exe, run_ffmpeg
from .files import (
    PathLike,
    atomic_folder,
    atomic_path,
    atomic_paths,
    atomic_write_bytes,
    atomic_write_text,
    check_output_folder,
    check_output_path,
    clean_stale_folders,
    clean_stale_temporaries,
)
from .images import load_image, save_image, to_rgb_uint8
from .keypoint_files import KEYPOINT_EXTENSIONS, load_keypoints, save_keypoints
from .video import (
    VIDEO_EXTENSIONS,
    clean_stale_video_dirs,
    parse_ffmpeg_report,
    probe_video,
    read_video_frames,
    write_video,
)

__all__ = [
    "KEYPOINT_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "PathLike",
    "SilentAudioWarning",
    "atomic_folder",
    "atomic_path",
    "atomic_paths",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_folder",
    "check_output_path",
    "child_argv",
    "clean_stale_folders",
    "clean_stale_temporaries",
    "clean_stale_video_dirs",
    "ffmpeg_exe",
    "load_audio",
    "load_image",
    "load_keypoints",
    "parse_ffmpeg_report",
    "parse_wav_bytes",
    "probe_audio",
    "probe_video",
    "read_video_frames",
    "resample",
    "run_ffmpeg",
    "save_image",
    "save_keypoints",
    "to_rgb_uint8",
    "write_video",
    "write_wav",
]
