from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import analysis.audio as audio
from analysis.audio import AudioError, decode
from analysis.probe import probe_duration, sniff_audio_format, wav_is_truncated
from analysis.quality import measure
from config.settings import QualitySettings
from tests.audio_fixtures import (
    dominant_frequency,
    encode_with_ffmpeg,
    ffmpeg_exe,
    ffmpeg_has_encoder,
    rms,
    silence,
    tone,
    white_noise,
    write_wav,
    write_wav_header,
)

RATES = [8000, 16000, 44100, 48000]
TONE_RMS = 0.5 / np.sqrt(2)

QUALITY = QualitySettings()


def _decode(path: Path, max_duration_seconds: float = 60.0, **kwargs: int) -> audio.DecodedAudio:
    return decode(path, ffmpeg=ffmpeg_exe(), max_duration_seconds=max_duration_seconds, **kwargs)


def _assert_tone(samples: np.ndarray, *, min_rms: float = 0.2) -> None:
    assert samples.dtype == np.float32
    assert abs(dominant_frequency(samples, audio.SAMPLE_RATE) - 440) < 3
    assert rms(samples) > min_rms


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(64)


# Decoding --------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(
    ("suffix", "subtype"),
    [
        (".wav", "PCM_U8"),
        (".wav", "PCM_16"),
        (".wav", "PCM_24"),
        (".wav", "PCM_32"),
        (".wav", "FLOAT"),
        (".wav", "DOUBLE"),
        (".wav", "ULAW"),
        (".wav", "ALAW"),
        (".flac", "PCM_16"),
        (".flac", "PCM_24"),
        (".ogg", "VORBIS"),
    ],
)
def test_decodes_libsndfile_formats(tmp_path: Path, suffix: str, subtype: str, rate: int) -> None:
    path = write_wav(tmp_path / f"tone{suffix}", tone(1.0, rate), rate, subtype)
    decoded = _decode(path)
    assert decoded.channels.shape == (1, audio.SAMPLE_RATE)
    assert decoded.source_sample_rate == rate
    assert decoded.source_channels == 1
    assert decoded.source_format == suffix[1:]
    assert decoded.duration_seconds == pytest.approx(1.0)
    assert decoded.nonfinite_samples == 0
    _assert_tone(decoded.channels[0])
    assert rms(decoded.channels[0]) == pytest.approx(TONE_RMS, rel=0.05)


def test_wav_that_libsndfile_cannot_read_goes_through_ffmpeg(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "src.wav", tone(2.0, 8000), 8000)
    path = encode_with_ffmpeg(src, tmp_path / "g726.wav", ["-c:a", "adpcm_g726", "-b:a", "32k"])
    decoded = _decode(path)
    assert decoded.source_format == "wav"
    assert decoded.source_sample_rate == 8000
    assert decoded.duration_seconds == pytest.approx(2.0, abs=0.01)
    _assert_tone(decoded.channels[0])


def test_mp3_inside_wav_has_no_garbage_tail(tmp_path: Path) -> None:
    # libsndfile's frame count for MP3-in-WAV is an estimate, longer than
    # what it then decodes.
    src = write_wav(tmp_path / "src.wav", tone(2.0, 16000), 16000)
    path = encode_with_ffmpeg(src, tmp_path / "mp3_in.wav", ["-c:a", "libmp3lame", "-f", "wav"])
    decoded = _decode(path)
    assert decoded.duration_seconds == pytest.approx(2.0, abs=0.15)  # MP3 padding kept
    assert np.abs(decoded.channels).max() < 0.6
    _assert_tone(decoded.channels[0])


LOSSY = {
    "mp3": (".mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    "m4a": (".m4a", ["-c:a", "aac", "-b:a", "64k"]),
    "aac": (".aac", ["-c:a", "aac", "-b:a", "64k", "-f", "adts"]),
    "opus": (".opus", ["-c:a", "libopus", "-b:a", "32k"]),
    "webm": (".webm", ["-c:a", "libopus", "-b:a", "32k"]),
}


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("name", LOSSY)
def test_decodes_ffmpeg_formats(tmp_path: Path, name: str, rate: int) -> None:
    suffix, args = LOSSY[name]
    is_opus = "libopus" in args
    if is_opus and rate == 44100:
        args = [*args, "-ar", "48000"]  # Opus has no 44.1 kHz mode
    src = write_wav(tmp_path / "src.wav", tone(2.0, rate), rate)
    path = encode_with_ffmpeg(src, tmp_path / f"tone{suffix}", args)
    decoded = _decode(path)
    assert sniff_audio_format(_head(path)) == name
    assert decoded.source_format == name
    assert decoded.source_sample_rate == (48000 if is_opus else rate)
    assert decoded.channels.shape[0] == decoded.source_channels == 1
    # Raw ADTS keeps the encoder's priming and padding (up to two 1024-sample
    # frames); the other containers record them and ffmpeg trims them.
    slack = 2048 / rate + 0.01 if name == "aac" else 0.06
    assert decoded.duration_seconds == pytest.approx(2.0, abs=slack)
    _assert_tone(decoded.channels[0])


def test_decodes_amr(tmp_path: Path) -> None:
    if not ffmpeg_has_encoder("libopencore_amrnb"):
        pytest.skip("this ffmpeg build has no AMR-NB encoder (libopencore_amrnb)")
    src = write_wav(tmp_path / "src.wav", tone(2.0, 8000), 8000)
    path = encode_with_ffmpeg(src, tmp_path / "tone.amr", ["-c:a", "libopencore_amrnb", "-b:a", "12.2k"])
    decoded = _decode(path)
    assert sniff_audio_format(_head(path)) == decoded.source_format == "amr"
    assert decoded.source_sample_rate == 8000
    assert decoded.channels.shape[0] == 1
    assert decoded.duration_seconds == pytest.approx(2.0, abs=0.06)
    _assert_tone(decoded.channels[0], min_rms=0.1)  # AMR's speech model dulls a pure tone


@pytest.mark.parametrize(
    ("suffix", "args"),
    [
        (".wav", None),
        (".flac", None),
        (".ogg", None),
        *[(suffix, args) for suffix, args in LOSSY.values() if "adts" not in args],
    ],
)
def test_stereo_channels_stay_separate(tmp_path: Path, suffix: str, args: list[str] | None) -> None:
    rate = 48000
    stereo = np.stack([tone(2.0, rate), silence(2.0, rate)])
    if args is None:
        path = write_wav(tmp_path / f"stereo{suffix}", stereo, rate, "VORBIS" if suffix == ".ogg" else "PCM_16")
    else:
        src = write_wav(tmp_path / "src.wav", stereo, rate)
        path = encode_with_ffmpeg(src, tmp_path / f"stereo{suffix}", args)
    decoded = _decode(path)
    assert decoded.source_channels == 2
    assert decoded.channels.shape[0] == 2
    left, right = decoded.channels
    _assert_tone(left)
    # The silent side must stay silent: averaging would put the tone there.
    assert rms(right) < rms(left) / 100


def test_stereo_keeps_distinct_content_in_order(tmp_path: Path) -> None:
    stereo = np.stack([tone(1.0, 8000, 440), tone(1.0, 8000, 1000)])
    decoded = _decode(write_wav(tmp_path / "call.wav", stereo, 8000))
    assert decoded.channels.flags["C_CONTIGUOUS"]  # each channel is one contiguous run
    left, right = decoded.channels
    assert dominant_frequency(left, audio.SAMPLE_RATE) == pytest.approx(440, abs=2)
    assert dominant_frequency(right, audio.SAMPLE_RATE) == pytest.approx(1000, abs=2)


def test_resamples_8k_to_16k(tmp_path: Path) -> None:
    decoded = _decode(write_wav(tmp_path / "phone.wav", tone(3.0, 8000, 440), 8000))
    assert decoded.source_sample_rate == 8000
    assert decoded.channels.shape == (1, 48000)
    assert decoded.duration_seconds == pytest.approx(3.0)
    assert dominant_frequency(decoded.channels[0], 16000) == pytest.approx(440, abs=1)
    # Nothing above the 4 kHz Nyquist of the source appears.
    spectrum = np.abs(np.fft.rfft(decoded.channels[0]))
    freqs = np.fft.rfftfreq(48000, 1 / 16000)
    assert spectrum[freqs > 4100].max() < spectrum.max() * 1e-3


def test_rf64_and_multichannel_keeps_each_channel(tmp_path: Path) -> None:
    rate = 16000
    channels = np.zeros((8, rate), dtype=np.float32)
    channels[5] = tone(1.0, rate)
    src = write_wav(tmp_path / "eight.wav", channels, rate)
    path = encode_with_ffmpeg(src, tmp_path / "eight_rf64.wav", ["-c:a", "pcm_s16le", "-rf64", "always"])
    assert sniff_audio_format(_head(path)) == "rf64"
    assert not wav_is_truncated(path)
    decoded = _decode(path)
    assert decoded.channels.shape == (8, rate)
    levels = [rms(channel) for channel in decoded.channels]
    assert levels[5] == pytest.approx(TONE_RMS, rel=0.02)
    assert max(levels[:5] + levels[6:]) < 1e-4


def test_more_channels_than_allowed_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "nine.wav", np.tile(tone(0.5, 8000), (9, 1)), 8000)
    with pytest.raises(AudioError) as error:
        _decode(path, max_channels=8)
    assert error.value.code == "undecodable_audio"
    assert "9 channels" in error.value.message


def test_dc_offset_is_removed_per_channel(tmp_path: Path) -> None:
    stereo = np.stack([tone(1.0, 16000) * 0.5 + 0.3, silence(1.0, 16000) - 0.2])
    decoded = _decode(write_wav(tmp_path / "dc.wav", stereo, 16000, "FLOAT"))
    assert np.abs(decoded.channels.mean(axis=1)).max() < 1e-6
    assert rms(decoded.channels[0]) == pytest.approx(TONE_RMS / 2, rel=0.01)


def test_nan_and_inf_samples_become_silence(tmp_path: Path) -> None:
    samples = tone(1.0, 16000)
    samples[1000:1100] = np.nan
    samples[5000] = np.inf
    decoded = _decode(write_wav(tmp_path / "nan.wav", samples, 16000, "FLOAT"))
    assert decoded.nonfinite_samples == 101
    assert np.isfinite(decoded.channels).all()
    assert np.all(decoded.channels[0, 1000:1100] == decoded.channels[0, 1000])


def test_all_nan_is_undecodable(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "nan.wav", np.full(8000, np.nan, np.float32), 8000, "FLOAT")
    with pytest.raises(AudioError) as error:
        _decode(path)
    assert error.value.code == "undecodable_audio"


# Bad inputs ------------------------------------------------------------------


def test_header_only_wav_is_undecodable(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(1.0, 16000), 16000)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(full.read_bytes()[:44])
    assert wav_is_truncated(header_only)
    with pytest.raises(AudioError) as error:
        _decode(header_only)
    assert error.value.code == "undecodable_audio"


def test_truncated_wav_is_detected_and_decodes_what_is_there(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(1.0, 16000), 16000)
    assert not wav_is_truncated(full)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 16000])  # half of the data
    assert wav_is_truncated(cut)
    assert _decode(cut).duration_seconds == pytest.approx(0.5)


def test_wav_without_data_chunk_is_truncated(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(1.0, 16000), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:30])
    assert wav_is_truncated(cut)


def test_streamed_wav_with_unknown_size_is_not_truncated(tmp_path: Path) -> None:
    data = bytearray(write_wav(tmp_path / "full.wav", tone(1.0, 16000), 16000).read_bytes())
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    assert not wav_is_truncated(streamed)
    assert _decode(streamed).duration_seconds == pytest.approx(1.0)


def test_non_wav_is_never_truncated(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "src.wav", tone(1.0, 16000), 16000)
    mp3 = encode_with_ffmpeg(src, tmp_path / "a.mp3", ["-c:a", "libmp3lame"])
    assert not wav_is_truncated(mp3)


def test_renamed_text_file_is_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    path.write_text("Name,Phone\nAnna,555-0100\n" * 50)
    with pytest.raises(AudioError) as error:
        _decode(path)
    assert error.value.code == "undecodable_audio"


def test_corrupt_mp3_gives_a_short_reason(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp3"
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40)
    with pytest.raises(AudioError) as error:
        _decode(path)
    assert error.value.code == "undecodable_audio"
    assert 0 < len(error.value.message) <= 200
    assert str(tmp_path) not in error.value.message


def test_zero_sample_wav_is_empty(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    assert not wav_is_truncated(path)
    with pytest.raises(AudioError) as error:
        _decode(path)
    assert error.value.code == "empty_audio"


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.touch()
    with pytest.raises(AudioError) as error:
        _decode(path)
    assert error.value.code == "empty_audio"


def test_three_hour_recording_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_wav_header(tmp_path / "long.wav", 3 * 3600, 8000)
    assert probe_duration(path, ffmpeg_exe()) == pytest.approx(3 * 3600)

    def must_not_decode(*args: object) -> None:
        raise AssertionError("decoded a recording that the header already ruled out")

    monkeypatch.setattr(audio, "_open_stream", must_not_decode)
    with pytest.raises(AudioError) as error:
        _decode(path, max_duration_seconds=7200)
    assert error.value.code == "recording_too_long"


def test_too_long_via_ffmpeg_header(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "src.wav", tone(3.0, 16000), 16000)
    mp3 = encode_with_ffmpeg(src, tmp_path / "a.mp3", ["-c:a", "libmp3lame"])
    assert probe_duration(mp3, ffmpeg_exe()) == pytest.approx(3.0, abs=0.1)
    with pytest.raises(AudioError) as error:
        _decode(mp3, max_duration_seconds=2.0)
    assert error.value.code == "recording_too_long"


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_too_long_caught_while_decoding_when_header_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    src = write_wav(tmp_path / "src.wav", tone(25.0, 16000), 16000)
    path = src if suffix == ".wav" else encode_with_ffmpeg(src, tmp_path / "a.mp3", ["-c:a", "libmp3lame"])
    monkeypatch.setattr(audio, "probe_duration", lambda *args: None)
    started = time.perf_counter()
    with pytest.raises(AudioError) as error:
        _decode(path, max_duration_seconds=12.0)
    assert error.value.code == "recording_too_long"
    assert time.perf_counter() - started < 5


def test_probe_duration_of_non_audio_is_none(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not audio")
    assert probe_duration(path, ffmpeg_exe()) is None


# Sniffing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "args", "expected"),
    [
        (".wav", ["-c:a", "pcm_s16le"], "wav"),
        (".flac", ["-c:a", "flac"], "flac"),
        (".ogg", ["-c:a", "libvorbis"], "ogg"),
        (".opus", ["-c:a", "libopus"], "opus"),
        (".mp3", ["-c:a", "libmp3lame"], "mp3"),
        (".mp3", ["-c:a", "libmp3lame", "-write_id3v2", "0", "-write_xing", "0"], "mp3"),
        (".m4a", ["-c:a", "aac"], "m4a"),
        (".mp4", ["-c:a", "aac"], "mp4"),
        (".aac", ["-c:a", "aac", "-f", "adts"], "aac"),
        (".amr", ["-c:a", "libopencore_amrnb", "-ar", "8000"], "amr"),
        (".webm", ["-c:a", "libopus"], "webm"),
        (".mka", ["-c:a", "libopus"], "matroska"),
        (".aiff", ["-c:a", "pcm_s16be"], "aiff"),
        (".caf", ["-c:a", "pcm_s16le"], "caf"),
    ],
)
def test_sniffs_each_container(tmp_path: Path, suffix: str, args: list[str], expected: str) -> None:
    if "libopencore_amrnb" in args and not ffmpeg_has_encoder("libopencore_amrnb"):
        pytest.skip("this ffmpeg build has no AMR-NB encoder (libopencore_amrnb)")
    src = write_wav(tmp_path / "src.wav", tone(0.5, 16000), 16000)
    path = encode_with_ffmpeg(src, tmp_path / f"out{suffix}", args)
    assert sniff_audio_format(_head(path)) == expected


@pytest.mark.parametrize("suffix", [".aiff", ".caf"])
def test_decodes_aiff_and_caf(tmp_path: Path, suffix: str) -> None:
    src = write_wav(tmp_path / "src.wav", tone(1.0, 44100), 44100)
    path = encode_with_ffmpeg(
        src, tmp_path / f"out{suffix}", ["-c:a", "pcm_s16be" if suffix == ".aiff" else "pcm_s16le"]
    )
    decoded = _decode(path)
    assert decoded.channels.shape == (1, 16000)
    _assert_tone(decoded.channels[0])


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, this is a plain text file\n",
        b"%PDF-1.7\n",
        b"RIFF\x00\x00\x00\x00AVI LIST",
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
        b"\xff",
    ],
)
def test_sniff_rejects_non_audio(head: bytes) -> None:
    assert sniff_audio_format(head) is None


# Quality ---------------------------------------------------------------------


def _tone_in_silence(rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    samples = np.concatenate([silence(1.0, rate), tone(3.0, rate), silence(1.0, rate)])
    samples += white_noise(5.0, rate, 1e-4)  # a realistic noise floor, -80 dBFS
    mask = np.zeros(len(samples), dtype=bool)
    mask[rate : 4 * rate] = True
    return samples, mask


def test_clean_tone_has_high_snr() -> None:
    samples, mask = _tone_in_silence()
    quality = measure(samples, 16000, mask, QUALITY)
    assert quality.snr_db is not None and quality.snr_db > 60
    assert quality.speech_seconds == pytest.approx(3.0)
    assert quality.speech_ratio == pytest.approx(0.6)
    assert quality.duration_seconds == pytest.approx(5.0)
    assert quality.flags == ()


def test_mask_at_vad_frame_rate_is_accepted() -> None:
    samples, mask = _tone_in_silence()
    frame_mask = mask[::512]  # one value per 32 ms, like segment.py's mask
    quality = measure(samples, 16000, frame_mask, QUALITY)
    assert quality.speech_seconds == pytest.approx(3.0, abs=0.05)
    assert quality.snr_db is not None and quality.snr_db > 50


def test_energy_fallback_without_mask() -> None:
    samples, _ = _tone_in_silence()
    quality = measure(samples, 16000, None, QUALITY)
    assert quality.speech_seconds == pytest.approx(3.0, abs=0.05)
    assert quality.snr_db is not None and quality.snr_db > 60


def test_noise_at_equal_power_has_low_snr() -> None:
    samples, mask = _tone_in_silence()
    samples += white_noise(5.0, 16000, TONE_RMS, seed=1)
    quality = measure(samples, 16000, mask, QUALITY)
    assert quality.snr_db == pytest.approx(0.0, abs=1.5)
    assert "low_snr" in quality.flags


def test_noise_everywhere_uses_percentile_estimate() -> None:
    # A VAD fooled by noise marks everything as speech, leaving no noise frames.
    samples = tone(5.0, 16000) + white_noise(5.0, 16000, TONE_RMS, seed=2)
    quality = measure(samples, 16000, np.ones(len(samples), dtype=bool), QUALITY)
    assert quality.snr_db is not None and quality.snr_db < 5
    assert "low_snr" in quality.flags


def test_clipping_is_flagged_after_decoding(tmp_path: Path) -> None:
    clipped = np.clip(tone(2.0, 8000, amplitude=3.0), -1.0, 1.0)
    decoded = _decode(write_wav(tmp_path / "loud.wav", clipped, 8000))
    samples = decoded.channels[0]
    quality = measure(samples, 16000, np.ones(len(samples), dtype=bool), QUALITY)
    assert quality.clipping_ratio > 0.1
    assert "clipping" in quality.flags


def test_silence_has_no_speech() -> None:
    samples = silence(3.0, 16000)
    for mask in (np.zeros(len(samples), dtype=bool), None):
        quality = measure(samples, 16000, mask, QUALITY)
        assert quality.speech_seconds == 0.0
        assert quality.snr_db is None
        assert quality.flags == ("no_speech",)


def test_short_speech_is_flagged() -> None:
    samples = np.concatenate([silence(1.0, 16000), tone(0.5, 16000), silence(1.0, 16000)])
    mask = np.abs(samples) > 0
    quality = measure(samples, 16000, mask, QualitySettings(min_speech_seconds=1.0))
    assert "too_short" in quality.flags
    assert "no_speech" not in quality.flags


def test_measure_handles_empty_input() -> None:
    quality = measure(np.zeros(0, np.float32), 16000, None, QUALITY)
    assert quality.duration_seconds == 0.0
    assert quality.flags == ("no_speech",)
