"""Audio input: every format decodes to the same samples, any rate, stereo -> mono, clear errors, silence warning.

The files are made in a temp dir, with the real ffmpeg, from one real recording (``speech/makeittalk_M6_04_16k.wav``).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from a2k_toolkit.audio import SilentAudioWarning, load_audio, parse_wav_bytes, probe_audio, resample, write_wav
from a2k_toolkit.errors import AudioLoadError
from a2k_toolkit.io import ffmpeg_exe

MONO_TO_STEREO = ["-af", "pan=stereo|c0=c0|c1=c0"]  # duplicate the channel (ffmpeg's own upmix scales by 1/sqrt 2)

# name -> (ffmpeg output args, minimum SNR in dB against the source). Lossless files only differ by the resampling
# round trip (ffmpeg up, ours down: band-edge differences); lossy codecs by their coding noise.
FORMATS = {
    "pcm16_16k.wav": (["-c:a", "pcm_s16le"], 200.0),
    "float_44k_stereo.wav": (["-ar", "44100", *MONO_TO_STEREO, "-c:a", "pcm_f32le"], 32.0),
    "s24_48k_stereo.flac": (["-ar", "48000", *MONO_TO_STEREO, "-c:a", "flac", "-sample_fmt", "s32"], 32.0),
    "vorbis_22k.ogg": (["-ar", "22050", "-c:a", "libvorbis", "-q:a", "6"], 18.0),
    "opus_48k.ogg": (["-c:a", "libopus", "-b:a", "64k"], 20.0),
    "mp3_44k_stereo.mp3": (["-ar", "44100", *MONO_TO_STEREO, "-c:a", "libmp3lame", "-b:a", "128k"], 18.0),
    "aac_48k.m4a": (["-ar", "48000", "-c:a", "aac", "-b:a", "128k"], 28.0),
    "pcm_stereo_32k.mka": (["-ar", "32000", *MONO_TO_STEREO, "-c:a", "pcm_s16le"], 32.0),
    "video_h264_aac.mp4": (None, 28.0),
    "video_vp8_opus.webm": (None, 20.0),
}


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    n = min(len(ref), len(x))
    err = float(np.sum((ref[:n].astype(np.float64) - x[:n]) ** 2))
    return 10 * np.log10(float(np.sum(ref[:n].astype(np.float64) ** 2)) / max(err, 1e-30))


@pytest.fixture(scope="module")
def source(speech_path):
    return load_audio(speech_path, 16000)


@pytest.fixture(scope="module")
def media(tmp_path_factory, speech_path):
    """Every format of FORMATS, made from the real recording."""
    d = tmp_path_factory.mktemp("formats")
    for name, (args, _) in FORMATS.items():
        out = d / name
        if name == "video_h264_aac.mp4":
            ffmpeg(
                "-f",
                "lavfi",
                "-i",
                "color=c=gray:s=64x64:r=25",
                "-i",
                str(speech_path),
                "-shortest",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-ar",
                "44100",
                str(out),
            )
        elif name == "video_vp8_opus.webm":
            ffmpeg(
                "-f",
                "lavfi",
                "-i",
                "color=c=gray:s=64x64:r=25",
                "-i",
                str(speech_path),
                "-shortest",
                "-c:v",
                "libvpx",
                "-c:a",
                "libopus",
                str(out),
            )
        else:
            ffmpeg("-i", str(speech_path), *args, str(out))
    return d


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_loads_to_the_same_samples(media, source, name):
    wav = load_audio(media / name, 16000)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - len(source)) <= 8, "length differs by more than 0.5 ms (encoder delay not trimmed?)"
    assert snr_db(source, wav) >= FORMATS[name][1]


def test_low_sample_rate_file_is_upsampled(tmp_path, source, speech_path):
    path = tmp_path / "phone_8k.wav"
    ffmpeg("-i", str(speech_path), "-ar", "8000", "-c:a", "pcm_s16le", str(path))
    wav = load_audio(path, 16000)
    assert abs(len(wav) - len(source)) <= 2
    band_limited = resample(resample(source, 16000, 8000), 8000, 16000)  # what an 8 kHz file can still hold
    assert snr_db(band_limited, wav) >= 25.0
    assert snr_db(source, wav) < 25.0  # and the 4-8 kHz band really is gone: the comparison above is not vacuous


def test_target_rate_other_than_16k(media, source):
    wav = load_audio(media / "aac_48k.m4a", 22050)
    assert abs(len(wav) - round(len(source) * 22050 / 16000)) <= 8
    assert snr_db(resample(source, 16000, 22050), wav) >= 28.0


@pytest.mark.parametrize("ext", [".wav", ".mka"])  # soundfile path and ffmpeg path
def test_stereo_is_the_average_of_the_channels(tmp_path, source, ext):
    path = tmp_path / f"left_only{ext}"
    write_wav(tmp_path / "mono.wav", source, 16000)
    # left = the speech, right = silence: the mono mix must be exactly half the speech on both decoding paths
    ffmpeg("-i", str(tmp_path / "mono.wav"), "-af", "pan=stereo|c0=c0|c1=0*c0", "-c:a", "pcm_s16le", str(path))
    wav = load_audio(path, 16000)
    expected = np.round(source * 32767) / 32767 / 2  # PCM16 twice
    np.testing.assert_allclose(wav, expected, atol=2.0 / 32768)


def test_real_mp3_and_video_tracks(shared_data):
    mp3 = load_audio(shared_data / "speech" / "vexpress_intro_tts.mp3", 16000)
    assert 30.9 < len(mp3) / 16000 < 31.3
    assert np.sqrt(np.mean(mp3**2)) > 0.01
    clip = shared_data / "clips" / "vr_4.mp4"  # 44.1 kHz stereo AAC beside 30 fps video
    info = probe_audio(clip)
    assert (info.codec, info.sample_rate, info.channels) == ("aac", 44100, 2)
    wav = load_audio(clip, 16000)
    assert abs(len(wav) / 16000 - info.duration) < 0.1


# ----------------------------------------------------------------------------------------------------------- errors


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(AudioLoadError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioLoadError, match="not a file"):
        load_audio(tmp_path)
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(AudioLoadError, match=r"empty \(0 bytes\)"):
        load_audio(tmp_path / "empty.mp3")


@pytest.mark.parametrize("name", ["noise.mp3", "noise.wav", "text.m4a", "noise.flac"])
def test_corrupt_or_unsupported_file(tmp_path, name):
    path = tmp_path / name
    if name.startswith("text"):
        path.write_text("this is not audio\n")
    else:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioLoadError, match="corrupt or not in a supported format") as exc:
        load_audio(path)
    assert str(path) in str(exc.value) and "Supported: wav, flac" in str(exc.value)


def test_truncated_wav_header(tmp_path, speech_path):
    path = tmp_path / "truncated.wav"
    path.write_bytes(speech_path.read_bytes()[:30])  # RIFF header cut inside the fmt chunk
    with pytest.raises(AudioLoadError, match="corrupt"):
        load_audio(path)


def test_files_without_an_audio_track(tmp_path, shared_data):
    video = tmp_path / "silent_film.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=64x64:r=25:d=0.4", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)
    )
    with pytest.raises(AudioLoadError, match=r"has no audio track \(only video or image streams\)"):
        load_audio(video)
    image = tmp_path / "photo.mp3"  # an image wearing an audio extension
    image.write_bytes((shared_data / "faces" / "obama.jpg").read_bytes())
    with pytest.raises(AudioLoadError, match="no audio track"):
        load_audio(image)


def test_header_without_samples(tmp_path):
    path = tmp_path / "nothing.wav"
    write_wav(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioLoadError, match="no audio samples"):
        load_audio(path)


def test_silent_file_loads_with_a_warning(tmp_path):
    path = tmp_path / "silence.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "1.5", str(path))
    with pytest.warns(SilentAudioWarning, match="only silence"):
        wav = load_audio(path, 16000)
    assert len(wav) == 24000 and not wav.any()


# ------------------------------------------------------------------------------------------------------ arrays


def test_array_input_channels_integers_and_no_needless_copy():
    rng = np.random.default_rng(0)
    mono = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    assert np.shares_memory(load_audio(mono, 16000), mono)  # already right: returned as is
    stereo = np.stack([mono, np.zeros_like(mono)])
    np.testing.assert_allclose(load_audio(stereo, 16000), mono / 2, atol=1e-7)  # (C, N)
    np.testing.assert_allclose(load_audio(stereo.T, 16000), mono / 2, atol=1e-7)  # (N, C)
    pcm = np.array([0, 16384, -32768, 32767], np.int16)
    np.testing.assert_allclose(load_audio(pcm, 16000), [0, 0.5, -1, 32767 / 32768], atol=1e-7)
    u8 = np.array([128, 255, 0], np.uint8)
    np.testing.assert_allclose(load_audio(u8, 16000), [0, 127 / 128, -1], atol=1e-7)
    loud = np.array([0.5, 2.0, -3.0], np.float32)
    out = load_audio(loud, 16000)
    np.testing.assert_array_equal(out, [0.5, 1.0, -1.0])
    np.testing.assert_array_equal(loud, [0.5, 2.0, -3.0])  # the caller's array is not clipped in place
    np.testing.assert_allclose(len(load_audio(mono, 16000, orig_sample_rate=48000)), 16000 / 3, atol=1)
    with pytest.raises(AudioLoadError, match="NaN"):
        load_audio(np.array([0.1, np.nan], np.float32))
    with pytest.raises(AudioLoadError, match="at most 8 channels"):
        load_audio(np.zeros((100, 100), np.float32))


def test_resample_keeps_a_tone():
    t = np.arange(44100) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = resample(tone, 44100, 16000)
    assert out.dtype == np.float32 and len(out) == 16000
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert snr_db(expected[500:-500], out[500:-500]) > 50


# ----------------------------------------------------------------------------------------------------- WAV output


def test_write_wav_clips_instead_of_wrapping_and_is_atomic(tmp_path):
    path = tmp_path / "out.wav"
    write_wav(path, np.array([0.0, 1.5, -2.0, 0.25], np.float32), 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temp file left behind
    np.testing.assert_allclose(load_audio(path, 16000), [0.0, 32767 / 32768, -1.0, 0.25], atol=1e-4)


def test_streamed_wav_with_bogus_sizes(speech_path):
    """Programs writing WAV to a pipe put 0 or a placeholder in the size fields; the data runs to the end."""
    import soundfile as sf

    good = speech_path.read_bytes()
    ref, sr = sf.read(str(speech_path), dtype="float32")
    wav, rate = parse_wav_bytes(good)
    assert rate == sr == 16000
    np.testing.assert_array_equal(wav, ref)
    data_at = good.index(b"data")
    for bogus in (0, 0xFFFFFFFF, 0x7FFFF000):
        b = bytearray(good)
        b[4:8] = bogus.to_bytes(4, "little")
        b[data_at + 4 : data_at + 8] = bogus.to_bytes(4, "little")
        wav, _ = parse_wav_bytes(bytes(b) + b"\x01")  # plus half a frame of trailing garbage
        np.testing.assert_array_equal(wav, ref)
    with pytest.raises(AudioLoadError, match="not a WAV"):
        parse_wav_bytes(b"ID3\x03" + good[4:])
