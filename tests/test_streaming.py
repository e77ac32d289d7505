"""Streaming (docs/streaming.md): the session, the contract of front-ends and generators, and the real components.

The real-component tests use the shipped model, the real log-mel and dlib, the bundled speech sample and photo: with
the full lookahead a stream equals offline generation of the same audio for any chunk sizes and input sample rates;
with a shorter one frames come as soon as the lookahead allows, the length is the same, and the quality against
offline is bounded (docs/streaming.md has the measurement on the shared clips).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit.audio import resample
from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
from a2k_toolkit.builtin.baselines import ProceduralGenerator, StaticGenerator
from a2k_toolkit.builtin.librosa_mel import LibrosaMel
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.builtin.stack import StackFrontend
from a2k_toolkit.builtin.streams import BlinkTrack
from a2k_toolkit.catalog import Catalog
from a2k_toolkit.errors import A2KError, InputError
from a2k_toolkit.hookspecs import hookimpl
from a2k_toolkit.keypoints import Keypoints, mouth_opening, reference_iod
from a2k_toolkit.motion import blink_schedule
from a2k_toolkit.pipeline import Pipeline
from a2k_toolkit.plugins import make_plugin_manager
from a2k_toolkit.streaming import (
    DEFAULT_LOOKAHEAD_MS,
    StreamingNotSupportedError,
    StreamResampler,
    StreamSession,
    lookahead_frames,
)
from a2k_toolkit.testing import (
    DummyFrontend,
    DummyGenerator,
    StreamingFrontendContract,
    StreamingGeneratorContract,
    push_in_pieces,
    test_waveform,
)

SAMPLES = Path(__file__).resolve().parents[1] / "a2k_toolkit" / "samples"
SPEECH, FACE = SAMPLES / "speech.wav", SAMPLES / "astronaut.jpg"
ATOL_PX = 1e-3  # float rounding of batched vs one-by-one network windows: measured 1e-4 px


# ------------------------------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000, 16000])
def test_stream_resampler_equals_offline_resampling(rate):
    wav = test_waveform(1.3, rate, seed=rate)
    offline = resample(wav, rate, 16000)
    for sizes in ((1,), (160,), (4000,), (7, 333, 1001)):
        out, _ = push_in_pieces(StreamResampler(rate, 16000), wav, sizes)
        np.testing.assert_array_equal(out, offline, err_msg=f"{rate} Hz in pieces of {sizes}")


def test_stream_resampler_returns_samples_after_its_filter_delay():
    rs = StreamResampler(44100, 16000)
    got = 0
    for i in range(0, 44100, 441):
        got += len(rs.push(np.zeros(441, np.float32)))
        due = (i + 441 - rs.delay_samples) * 16000 / 44100
        assert due - 1 <= got <= (i + 441) * 16000 / 44100 + 1
    assert got + len(rs.flush()) == 16000


def test_stream_resampler_memory_is_bounded():
    rs = StreamResampler(48000, 16000)
    for _ in range(200):
        rs.push(np.zeros(4800, np.float32))
    assert len(rs._buf) < 200


# --------------------------------------------------------------------------------------- contract: front-ends


class TestLogMelStreaming(StreamingFrontendContract):
    component_class = LogMel


class TestLibrosaMelStreaming(StreamingFrontendContract):
    component_class = LibrosaMel
    stream_chunks = ((160,), (7, 333, 1001))


class LogMel8k(LogMel):
    """logmel at 8 kHz: a stack member at another sample rate than the stack's."""

    name = "logmel-8k"
    sample_rate = 8000


class EightK:
    @hookimpl
    def register_audio_frontends(self, register):
        register(LogMel8k)


def stack_catalog() -> Catalog:
    return Catalog(make_plugin_manager(entry_points=False, plugins=[EightK()]))


class TestStackStreaming(StreamingFrontendContract):
    component_class = StackFrontend
    params = {"members": ["logmel", {"name": "logmel-8k", "params": {"n_mels": 40, "n_fft": 256, "win_length": 200}}]}
    stream_chunks = ((1,), (160,), (7, 333, 1001))

    def make(self, **extra):
        return stack_catalog().build("audio", "stack", {**self.params, **extra})


def test_stack_member_that_does_not_stream_is_named():
    class Plugin:
        @hookimpl
        def register_audio_frontends(self, register):
            register(DummyFrontend)

    catalog = Catalog(make_plugin_manager(entry_points=False, plugins=[Plugin()]))
    stack = catalog.build("audio", "stack", {"members": ["logmel", "dummy-audio"]})
    with pytest.raises(StreamingNotSupportedError, match="dummy-audio"):
        stack.stream()


def test_logmel_with_top_db_floors_at_the_loudest_so_far():
    fe = LogMel(top_db=40.0)
    wav = test_waveform(1.0, 16000)
    wav[8000:] *= 8.0  # the loudest part comes late
    rows, _ = push_in_pieces(fe.stream(), wav, (1600,))
    offline = fe(wav, 16000)
    loudest = int(LogMel()(wav, 16000).max(1).argmax())  # the frame of the clip's loudest value
    assert (rows <= offline + 1e-4).all()  # floored at the loudest value so far: never above offline
    assert (rows < offline - 1.0).any()  # and lower before the loudest part
    np.testing.assert_allclose(rows[loudest + 3 :], offline[loudest + 3 :], atol=1e-4)  # as offline after it


# --------------------------------------------------------------------------------------- contract: generators


class TestStaticStreaming(StreamingGeneratorContract):
    component_class = StaticGenerator
    exact_lookaheads = (0, 3, None)


def speech_features(T: int) -> np.ndarray:
    from a2k_toolkit.audio import load_audio

    feats = LogMel()(load_audio(SPEECH, 16000), 16000)
    return np.resize(feats, (T, feats.shape[1]))  # repeated past the clip's end


class TestProceduralStreaming(StreamingGeneratorContract):
    component_class = ProceduralGenerator

    def _inputs(self, T: int = 30):  # log-mel of speech, what it is made for (random rows make it jitter at 0 ms)
        _, ref = super()._inputs(T)
        return speech_features(T), ref


def test_procedural_streams_a_reference_with_depth():
    """A reference with a depth column (68, 3), e.g. mediapipe's with z kept: procedural moves its x, y, offline and
    streamed, and returns (T, 68, 2); each lookahead's stream is the one of the x, y reference."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(150.0, 350.0, (1, 68, 2)).astype(np.float32)
    z = rng.uniform(-30.0, 30.0, (1, 68, 1)).astype(np.float32)
    ref3, ref2 = Keypoints(np.concatenate([xy, z], -1), image_size=(512, 512)), Keypoints(xy, image_size=(512, 512))
    feats, gen = speech_features(80), ProceduralGenerator()
    offline = gen.generate(feats, ref3, seed=0).points
    assert offline.shape == (80, 68, 2)
    np.testing.assert_allclose(offline, gen.generate(feats, ref2, seed=0).points, atol=1e-4)
    for lookahead in (None, 0, 5):
        out, _ = push_in_pieces(gen.stream(ref3, lookahead=lookahead, seed=0), feats, (7, 1, 13))
        plain, _ = push_in_pieces(gen.stream(ref2, lookahead=lookahead, seed=0), feats, (7, 1, 13))
        assert out.shape == (80, 68, 2) and out.dtype == np.float32
        np.testing.assert_array_equal(out, plain)
        if lookahead is None:
            np.testing.assert_array_equal(out, offline)
    # static keeps the depth column offline; its stream's frames are (68, 2), the reference's x, y
    static = StaticGenerator()
    assert static.generate(feats, ref3).points.shape == (80, 68, 3)
    out, _ = push_in_pieces(static.stream(ref3, lookahead=0), feats, (7, 1, 13))
    np.testing.assert_array_equal(out, np.repeat(xy, 80, 0))


class TestAudio2KeypointStreaming(StreamingGeneratorContract):
    component_class = Audio2KeypointGenerator
    exact_lookaheads = (None, 64, 100)
    stream_lookaheads = (0, 5, None)

    def make(self, **extra):
        # the network's windows: a lookahead of the window or more equals offline. The shipped model's energy mouth
        # reads the whole clip's loudness range, so with it only lookahead None does (test_energy_mouth_streams)
        return pipeline(energy_mouth=0.0).generator


def docs_example():
    """The streaming generator of docs/plugins.md ("7. Streaming"), as written there."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = text[text.index("## 7. Streaming") :]
    code = re.search(r"```python\n(import numpy.*?class MouthTapStream.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/plugins.md", "exec"), namespace)
    return namespace["MouthTap"]


class TestDocsExampleStreaming(StreamingGeneratorContract):
    component_class = docs_example()
    exact_lookaheads = (0, 3, None)


def test_blink_track_equals_blink_schedule():
    for seed in range(30):
        for interval in (0.3, 1.0, 3.5):
            T = 40 + 7 * seed
            offline = blink_schedule(T, interval, 25.0, np.random.default_rng(seed))
            track = BlinkTrack(interval, 25.0, np.random.default_rng(seed))
            parts, t = [], 0
            for n in [1, 3, 9, 2] * 40:
                if t + n > T - 2:  # the last two frames once the end is known (see BlinkTrack)
                    break
                parts.append(track.closing(t, t + n))
                t += n
            parts.append(track.closing(t, T, total=T))
            np.testing.assert_array_equal(np.concatenate(parts), offline, err_msg=f"seed {seed}, {interval} s")


def test_component_that_does_not_stream_is_a_clear_error():
    with pytest.raises(StreamingNotSupportedError, match="dummy-generator"):
        StreamSession(LogMel(), DummyGenerator(), pipeline_reference())
    with pytest.raises(StreamingNotSupportedError, match="dummy-audio"):
        StreamSession(DummyFrontend(), StaticGenerator(), pipeline_reference())


def test_unknown_generator_option_is_named():
    with pytest.raises(InputError, match="'window'.*options: hop"):
        StreamSession(LogMel(), pipeline().generator, pipeline_reference(), window=3)
    with pytest.raises(InputError, match="has no streaming option 'hop'"):
        StreamSession(LogMel(), StaticGenerator(), pipeline_reference(), hop=2)


def test_lookahead_in_frames():
    assert lookahead_frames(0, 25) == 0 and lookahead_frames(39.9, 25) == 0 and lookahead_frames(40, 25) == 1
    assert lookahead_frames(200, 25) == 5 and lookahead_frames("120", 25) == 3
    assert lookahead_frames("full", 25) is None and lookahead_frames(float("inf"), 25) is None
    assert lookahead_frames(None, 25) == lookahead_frames(DEFAULT_LOOKAHEAD_MS, 25)
    for bad in (-1, "soon", float("nan"), True):
        with pytest.raises(InputError, match="lookahead"):
            lookahead_frames(bad, 25)


# ---------------------------------------------------------------------------------------- the real components

_PIPE: dict[str, Pipeline] = {}


def pipeline(**generator_params) -> Pipeline:
    """The shipped model with the real log-mel and dlib (cached per generator params)."""
    key = repr(sorted(generator_params.items()))
    if key not in _PIPE:
        config = {"audio": "logmel", "detector": "dlib", "device": "cpu", "seed": 0}
        config["generator"] = {"name": "audio2keypoint", "params": generator_params}
        _PIPE[key] = Pipeline.from_config(config)
    return _PIPE[key]


_REF = {}


def pipeline_reference():
    if "ref" not in _REF:
        _REF["ref"] = pipeline().detect(FACE)
    return _REF["ref"]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return pipeline().load_audio(SPEECH)


@pytest.fixture(scope="module")
def offline(speech):
    return pipeline()(image=FACE, audio=speech, reference=pipeline_reference()).keypoints


def stream_all(session: StreamSession, wav: np.ndarray, sizes, rate=None, check=None):
    """All frames of ``wav`` pushed in pieces of ``sizes`` (cycled); ``check(samples_pushed, frames_so_far)``."""
    frames, i, k = [], 0, 0
    while i < len(wav):
        n = int(sizes[k % len(sizes)])
        frames += session.push(wav[i : i + n], rate)
        i, k = i + n, k + 1
        if check is not None:
            check(min(i, len(wav)), len(frames))
    frames += session.flush()
    assert [f.index for f in frames] == list(range(len(frames)))
    return session.keypoints(frames)


def random_sizes(seed: int, n: int = 400) -> list[int]:
    return list(np.random.default_rng(seed).choice([1, 160, 4000, 7, 333, 1001, 2047, 641], size=n))


def test_full_lookahead_equals_offline_for_any_chunks(speech, offline):
    # the shipped model's energy mouth reads the clip's loudness range: every frame at flush; without it the network's
    # windows stream with the window as lookahead, equal to offline too
    plain = pipeline(energy_mouth=0.0)
    plain_offline = plain(image=FACE, audio=speech, reference=pipeline_reference()).keypoints
    for pipe, want, lookahead in ((pipeline(), offline, None), (plain, plain_offline, 64)):
        for seed in (0, 1):
            session = pipe.stream(reference=pipeline_reference(), lookahead_ms="full")
            assert session.lookahead == lookahead
            kp = stream_all(session, speech, random_sizes(seed))
            assert kp.points.shape == want.points.shape
            np.testing.assert_allclose(kp.points, want.points, atol=ATOL_PX)
            assert kp.fps == want.fps and kp.image_size == want.image_size and kp.meta == want.meta


def test_full_lookahead_one_sample_at_a_time():
    wav = pipeline().load_audio(SPEECH)[: int(16000 * 1.3)]
    offline = pipeline()(image=FACE, audio=wav, reference=pipeline_reference()).keypoints
    kp = stream_all(pipeline().stream(reference=pipeline_reference(), lookahead_ms="full"), wav, [1])
    np.testing.assert_allclose(kp.points, offline.points, atol=ATOL_PX)


@pytest.mark.parametrize("rate", [44100, 16000])
def test_full_lookahead_at_other_sample_rates(speech, rate):
    wav = resample(speech, 16000, rate)  # the input: speech at `rate`; offline loads it the way files are loaded
    offline = pipeline()(image=FACE, audio=(wav, rate), reference=pipeline_reference()).keypoints
    session = pipeline().stream(reference=pipeline_reference(), lookahead_ms="full", sample_rate=rate)
    kp = stream_all(session, wav, [int(rate * 0.02), 4410, 3])
    np.testing.assert_allclose(kp.points, offline.points, atol=ATOL_PX)


def test_integer_and_stereo_chunks_are_read_as_files_are(speech, offline):
    pcm = np.round(np.clip(speech, -1, 1) * 32767).astype(np.int16)
    stereo = np.stack([pcm, pcm], axis=1)
    expected = pipeline()(image=FACE, audio=pcm, reference=pipeline_reference()).keypoints
    kp = stream_all(pipeline().stream(reference=pipeline_reference(), lookahead_ms="full"), stereo, [320])
    np.testing.assert_allclose(kp.points, expected.points, atol=ATOL_PX)


def rows_complete(samples: int) -> int:
    """logmel rows complete after ``samples`` at 16 kHz: frame t needs samples up to 640 (t + 1) + 176."""
    return max(0, (samples - 176) // 640)


@pytest.mark.parametrize("lookahead_ms,frames", [(200, 5), (0, 0)])
def test_shorter_lookahead_returns_frames_when_due(speech, offline, lookahead_ms, frames):
    session = pipeline().stream(reference=pipeline_reference(), lookahead_ms=lookahead_ms)
    assert session.lookahead == frames
    assert session.latency_ms == pytest.approx(1000 * frames / 25 + 11.0)
    due = []

    def check(pushed, returned):
        due.append((returned, max(0, rows_complete(pushed) - frames)))

    kp = stream_all(session, speech, [320], check=check)  # 20 ms chunks
    assert all(returned == expected for returned, expected in due), due[:20]
    assert kp.points.shape == offline.points.shape
    np.testing.assert_allclose(kp.points[0], offline.points[0], atol=ATOL_PX)


def mouth_stats(pred, offline):
    from a2k_toolkit.eval.metrics import best_lag_correlation, lmd

    iod = reference_iod(offline)
    corr, lag = best_lag_correlation(mouth_opening(offline, iod), mouth_opening(pred, iod))

    def jump(points):
        rel = points[:, 48:68] - points[:, 30:31]
        return np.abs(np.diff(rel, axis=0)).max() / iod

    return corr, lag, lmd(pred, offline, iod), jump(pred) / jump(offline)


def test_shorter_lookahead_quality_and_no_seams(speech):
    """Measured on this clip (mouth-opening r and mouth LMD against offline, largest mouth move / offline's): 200 ms
    hop 1: 0.93, 0.010 IOD, 0.91; hop 2: 0.93, 0.011, 1.09; 0 ms: 0.66, 0.021, 1.65 (one window per frame, each
    with no audio after the frame). docs/streaming.md has the shared clips."""
    cases = ((200, 1, 0.85, 0.02, 1.5), (200, 2, 0.85, 0.02, 1.5), (0, 1, 0.55, 0.04, 2.0))
    pipe = pipeline(energy_mouth=0.0)  # the network's windows (the energy mouth: test_energy_mouth_streams)
    offline = pipe(image=FACE, audio=speech, reference=pipeline_reference()).keypoints
    for lookahead_ms, hop, min_corr, max_lmd, max_jump in cases:
        session = pipe.stream(reference=pipeline_reference(), lookahead_ms=lookahead_ms, hop=hop)
        kp = stream_all(session, speech, random_sizes(lookahead_ms + hop))
        corr, lag, lmd, jump = mouth_stats(kp.points, offline.points)
        assert corr >= min_corr and lmd <= max_lmd and abs(lag) <= 2, (lookahead_ms, hop, corr, lag, lmd)
        assert jump <= max_jump, (lookahead_ms, hop, jump)  # no seams: moves no larger than offline's, to a margin


def test_shorter_lookahead_is_independent_of_chunk_sizes(speech):
    wav = speech[: 16000 * 4]
    a = stream_all(pipeline().stream(reference=pipeline_reference(), lookahead_ms=120), wav, [320])
    b = stream_all(pipeline().stream(reference=pipeline_reference(), lookahead_ms=120), wav, random_sizes(5))
    np.testing.assert_allclose(a.points, b.points, atol=ATOL_PX)


@pytest.mark.parametrize(
    "params",
    [
        {"head_motion": 0.0, "mouth_scale": 0.5, "blink_interval": 0.8, "anchor_frames": 3, "energy_mouth": 0.0},
        {"head_motion": 2.0, "mouth_scale": 1.0, "blink_interval": 0.0, "anchor_frames": 0, "overlap": 8},
        {"head_motion": 3.0, "mouth_scale": 1.4, "anchor_frames": 8, "energy_mouth": 0.0, "keep_mouth_shape": 1.0},
        {"anchor_frames": 0, "energy_mouth": 0.0, "keep_mouth_shape": 0.5},
        {"anchor_frames": 3, "energy_mouth": 0.0, "keep_mouth_shape": 0.0, "mouth_prior": 1.5},
    ],
)
def test_motion_controls_as_offline_at_full_lookahead(speech, params):
    pipe = pipeline(**params)
    offline = pipe(image=FACE, audio=speech, reference=pipeline_reference()).keypoints
    kp = stream_all(pipe.stream(reference=pipeline_reference(), lookahead_ms="full"), speech, random_sizes(9))
    np.testing.assert_allclose(kp.points, offline.points, atol=ATOL_PX)


def test_silence_gate_streams_close_to_offline(speech):
    """The gate's speech level is that of the last 10 s up to the frame's lookahead (offline: the whole clip):
    measured on this clip (a second of silence each side), every frame's mouth opening within 0.0014 IOD of
    offline's, where the gate moves it by more than 0.05."""
    wav = np.concatenate([np.zeros(16000, np.float32), speech[: 16000 * 5], np.zeros(16000, np.float32)])
    pipe = pipeline(silence_gate_db=25.0)
    offline = pipe(image=FACE, audio=wav, reference=pipeline_reference()).keypoints.points
    ungated = pipeline()(image=FACE, audio=wav, reference=pipeline_reference()).keypoints.points
    kp = stream_all(pipe.stream(reference=pipeline_reference(), lookahead_ms="full"), wav, [320]).points
    iod = reference_iod(offline)
    diff = np.abs(mouth_opening(kp, iod) - mouth_opening(offline, iod))
    gate_effect = np.abs(mouth_opening(ungated, iod) - mouth_opening(offline, iod))
    assert gate_effect.max() > 0.05  # the gate closes the mouth in the silences
    assert diff.max() < 0.005, np.percentile(diff, [50, 90, 99, 100])


def test_procedural_streams_close_to_offline(speech):
    gen = ProceduralGenerator()
    ref = pipeline_reference()
    feats = pipeline().features(speech)
    offline = gen.generate(feats, ref, seed=0).points
    session = StreamSession(pipeline().audio, gen, ref, lookahead_ms=200, seed=0)
    kp = stream_all(session, speech, [320]).points
    iod = reference_iod(offline)
    corr = np.corrcoef(mouth_opening(kp, iod), mouth_opening(offline, iod))[0, 1]
    assert kp.shape == offline.shape and corr > 0.8, corr


# --------------------------------------------------------------------------------------------- the session API


def test_session_refuses_bad_input(speech):
    session = pipeline().stream(reference=pipeline_reference(), sample_rate=16000)
    session.push(speech[:320])
    with pytest.raises(InputError, match="one sample rate"):
        session.push(speech[:441], 44100)
    with pytest.raises(InputError, match="NaN"):
        session.push(np.full(10, np.nan, np.float32))
    with pytest.raises(InputError, match="mono samples"):
        session.push(np.zeros((3, 100, 2), np.float32))
    rest = session.flush()
    assert len(rest) and session.closed
    with pytest.raises(A2KError, match="closed"):
        session.push(speech[:320])
    with pytest.raises(InputError, match="image"):
        pipeline().stream()
    with pytest.raises(InputError, match="sample_rate"):
        pipeline().stream(reference=pipeline_reference(), sample_rate=0)


def test_session_from_an_image_and_as_a_context_manager(speech):
    with pipeline().stream(image=FACE, lookahead_ms=0) as session:
        first = session.push(speech[:1600])
        assert first and first[0].index == 0 and first[0].timestamp == 0.0
        np.testing.assert_allclose(first[0].points, pipeline_reference().points[0], atol=ATOL_PX)
        assert first[0].points.shape == (68, 2) and first[0].points.dtype == np.float32
    assert session.closed


def test_flush_without_audio_gives_no_frames():
    session = pipeline().stream(reference=pipeline_reference())
    assert session.flush() == []


def test_energy_mouth_streams(speech):
    """With the energy mouth on, the full lookahead is every frame at flush (its loudness range is the clip's) and
    equals offline; at the default lookahead its opening follows offline's (the range of the last seconds)."""
    pipe = pipeline(energy_mouth=1.0)
    offline = pipe(image=FACE, audio=speech, reference=pipeline_reference()).keypoints.points
    session = pipe.stream(reference=pipeline_reference(), lookahead_ms="full")
    assert session.lookahead is None
    kp = stream_all(session, speech, random_sizes(5)).points
    np.testing.assert_allclose(kp, offline, atol=ATOL_PX)
    no_energy = pipeline(energy_mouth=0.0)
    plain = no_energy(image=FACE, audio=speech, reference=pipeline_reference()).keypoints.points
    live = stream_all(pipe.stream(reference=pipeline_reference()), speech, [320]).points
    live_plain = stream_all(no_energy.stream(reference=pipeline_reference()), speech, [320]).points
    iod = reference_iod(offline)
    added = mouth_opening(offline, iod) - mouth_opening(plain, iod)
    added_live = mouth_opening(live, iod) - mouth_opening(live_plain, iod)
    assert added.max() > 0.05
    assert np.corrcoef(added[25:], added_live[25:])[0, 1] > 0.9
    for lookahead_ms, max_jump in ((320, 1.5), (0, 2.5)):  # no seams: moves no larger than offline's, to a margin
        kp = stream_all(pipe.stream(reference=pipeline_reference(), lookahead_ms=lookahead_ms), speech, [320]).points
        assert mouth_stats(kp, offline)[3] <= max_jump, lookahead_ms
