"""Split one 16 kHz channel into utterance segments with Silero VAD.

The emotion model scores best on 3-10 s of one speaker's speech, so VAD
regions are merged across short pauses, packed towards that length, and cut
when a stretch of speech has no pause to cut at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
import torch

from analysis.audio import SAMPLE_RATE
from config.settings import SegmentationSettings

VAD_FRAME_SAMPLES = 512  # Silero's window at 16 kHz
MASK_FRAME_SECONDS = VAD_FRAME_SAMPLES / SAMPLE_RATE  # 32 ms per speech-mask value
_THRESHOLD = 0.5
_MIN_KEEP_SECONDS = 0.3
# Silero's LSTM starts from a blank state, so its first frames of speech
# score low (0.4-0.6 on espeak words); on clips under half a second that is
# much of the clip, so energy decides instead.
_VAD_MIN_SECONDS = 0.5
_SHORT_CLIP_SPEECH_DBFS = -45.0

# Silero's network, taken apart so that most of it runs batched. A frame's
# input is its 512 samples after the 64 before them (the previous frame's
# last ones; zeros before the first frame), padded on the right by
# reflection, from which a 256-point STFT at hop 128 takes four spectra.
_CONTEXT_SAMPLES = 64
_STFT_LENGTH = 256
_STFT_HOP = 128
_STFT_FRAMES = 4  # spectra per frame: (64 + 512 + 64 reflected - 256) / 128 + 1
# The STFT and the convolutional encoder have no state, so they run over
# blocks of frames at once. On a CPU, 512 frames' activations stay in the L2
# cache, which runs the encoder about twice as fast as a whole channel in one
# call; a GPU wants big blocks instead, or it waits on kernel launches (on an
# H200, layers of these shapes took 2.2 ms per channel-minute in blocks of
# 512 frames, 0.17 in blocks of 4096). Blocks also bound the working memory.
_FEATURE_BLOCK_FRAMES = 512
_GPU_FEATURE_BLOCK_FRAMES = 16_384
# Only the LSTM is recurrent. It runs over the whole channel in order, its
# state carried from span to span (spans only bound the memory of its gate
# buffers on long recordings), so the answer is the frame-by-frame loop's to
# float rounding. It is not cut into chunks run side by side as batch rows:
# Silero's state carries context for tens of seconds. Restarted blank
# partway through a tone-synthesised call, its own loop disagreed with an
# uninterrupted run on up to half of the next 10 s; chunk rows of 10 s, each
# warmed up on the 1 s before it, agreed with the loop on 72-99% of the
# frames of bench/vad.py's calls (85% overall), and rows of 60 s warmed up
# on 15 s on 93-100% (96%). In order, the LSTM takes about half the time
# on the CPU (10-13 us a step; a step's two small matrix products are most
# of it); as batch rows it took 15-20%.
_LSTM_SPAN_FRAMES = 18_750  # 10 minutes


@dataclass(frozen=True)
class Segment:
    channel: int
    start: float  # seconds from the start of the recording
    end: float


@cache
def _silero() -> ModuleType:
    # Importing silero_vad calls torch.set_num_threads(1) for the whole
    # process, which would starve the emotion model; put the setting back.
    threads = torch.get_num_threads()
    import silero_vad

    torch.set_num_threads(threads)
    return silero_vad


@cache
def load_vad() -> Any:
    """Silero's TorchScript model from the wheel (no network; the ONNX one
    would need onnxruntime), on the CPU. speech_probabilities only reads its
    weights; called frame by frame it keeps LSTM state between calls, which
    is not thread-safe, so use one per process, as Celery's prefork pool does."""
    return _silero().load_silero_vad(onnx=False)


@dataclass(frozen=True)
class _SileroParts:
    """Silero's 16 kHz network on one device: its STFT window and reflection
    padding, its convolutional encoder as dense layers (matrix, bias), its
    LSTM cell's weights in a sequence LSTM (one call for many steps), and its
    output head."""

    stft_window: torch.Tensor
    stft_padding: Any
    encoder: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    lstm: torch.nn.LSTM
    head: Any
    device: torch.device


@cache
def _silero_parts(device: str) -> _SileroParts:
    # The CPU shares load_vad()'s modules, which are only read here; another
    # device gets its own copy, as TorchScript's .to() moves modules in place.
    model = load_vad() if device == "cpu" else _silero().load_silero_vad(onnx=False).to(device)
    net = model._model
    cell = net.decoder.rnn
    lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1], batch_first=True)
    # LSTMCell and LSTM share the gate layout (i, f, g, o).
    lstm.load_state_dict(
        {
            "weight_ih_l0": cell.weight_ih,
            "weight_hh_l0": cell.weight_hh,
            "bias_ih_l0": cell.bias_ih,
            "bias_hh_l0": cell.bias_hh,
        }
    )
    return _SileroParts(
        # Silero's STFT is a convolution with a windowed DFT basis; its first
        # row (the cosine at 0 Hz) is the window itself, and an FFT of the
        # windowed frames gives the same spectra for a fraction of the work.
        stft_window=net.stft.forward_basis_buffer[0, 0].detach().clone(),
        stft_padding=net.stft.padding,
        encoder=_dense_encoder(net.encoder, _STFT_FRAMES),
        lstm=lstm.eval().requires_grad_(False).to(device),
        head=net.decoder.decoder,
        device=torch.device(device),
    )


def _dense_encoder(encoder: Any, length: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Silero's encoder (four Conv1d + ReLU blocks over a frame's 4 spectra)
    as four dense layers on the flattened, time-major activations.

    A frame's sequence is so short (4, 4, 2, 1, 1 steps from layer to layer)
    that a convolution library spends most of its time on bookkeeping: as
    matrices, built by passing the identity through each conv, a block of
    frames takes one GEMM per layer, and the encoder ran twice as fast on the
    2-core CPU (bench/vad.py). Padded taps are zeros in the matrices, so the
    arithmetic is the conv's, to float rounding."""
    layers = []
    for block in encoder.children():
        conv = block.reparam_conv
        channels = conv.weight.shape[1]
        inputs = channels * length
        # Built on the CPU in float64 whatever the device: exact (a GPU's conv
        # could use TF32 or an FFT algorithm here), then moved to the weights' device.
        weight = conv.weight.detach().cpu().double()
        identity = torch.eye(inputs, dtype=torch.float64).reshape(inputs, length, channels).transpose(1, 2)
        with torch.inference_mode():
            out = torch.nn.functional.conv1d(identity, weight, None, conv.stride, conv.padding)
        length = out.shape[-1]
        matrix = out.transpose(1, 2).reshape(inputs, -1)  # (length_in × C_in, length_out × C_out)
        bias = conv.bias.detach().repeat(length)
        layers.append((matrix.float().contiguous().to(conv.weight.device), bias))
    return tuple(layers)


def speech_probabilities(samples: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Silero's speech probability for each 32 ms frame of 16 kHz audio, as
    its frame-by-frame loop gives it, with the stateless part batched.

    ``samples`` is one channel, (n,), or the channels of one recording,
    (channels, n): those run through the LSTM side by side as batch rows,
    which costs little more than one channel, since the LSTM's time is mostly
    a fixed cost per step (a stereo call's VAD is then about one channel's)."""
    parts = _silero_parts(device)
    channels = np.atleast_2d(samples)
    n_frames = math.ceil(channels.shape[1] / VAD_FRAME_SAMPLES)
    with _one_cpu_thread(parts.device), torch.inference_mode():
        audio = torch.as_tensor(channels, dtype=torch.float32, device=parts.device)
        features = torch.stack([_frame_features(parts, row, n_frames) for row in audio])  # (C, n_frames, 128)
        hidden = torch.empty_like(features)
        state = None
        for first in range(0, n_frames, _LSTM_SPAN_FRAMES):
            span = slice(first, first + _LSTM_SPAN_FRAMES)
            hidden[:, span], state = parts.lstm(features[:, span], state)
        probs = parts.head(hidden.reshape(-1, hidden.shape[-1], 1)).reshape(len(channels), n_frames)
    result = probs.cpu().numpy()
    return result if samples.ndim == 2 else result[0]


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    # One LSTM step (one 32 ms frame) is too little work to share between
    # threads: with two, each step waits on a thread barrier, which costs
    # twice the CPU when the machine is idle and 10-20x the wall time when
    # other processes compete for the cores. The batched front end would gain
    # from a second thread on an idle machine (the whole call 1.35x faster on
    # the 2-core CPU) but loses 1.4-1.8x when other processes keep the cores
    # busy (bench/vad.py beside other test suites), so the call keeps to one.
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _frame_features(parts: _SileroParts, samples: torch.Tensor, n_frames: int) -> torch.Tensor:
    """The encoder's output for every 32 ms frame: (n_frames, 128)."""
    block_frames = _FEATURE_BLOCK_FRAMES if parts.device.type == "cpu" else _GPU_FEATURE_BLOCK_FRAMES
    features = torch.empty(n_frames, parts.lstm.input_size, device=parts.device)
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        # The block's frames with their context, as overlapping views of one
        # buffer; zeros before the first frame and after the last sample.
        start = first * VAD_FRAME_SAMPLES - _CONTEXT_SAMPLES
        block = samples[max(start, 0) : (first + count) * VAD_FRAME_SAMPLES]
        buffer = block.new_zeros(_CONTEXT_SAMPLES + count * VAD_FRAME_SAMPLES)
        buffer[max(-start, 0) : max(-start, 0) + len(block)] = block
        inputs = buffer.unfold(0, _CONTEXT_SAMPLES + VAD_FRAME_SAMPLES, VAD_FRAME_SAMPLES)
        frames = parts.stft_padding(inputs).unfold(1, _STFT_LENGTH, _STFT_HOP)  # (count, 4, 256)
        spectra = torch.fft.rfft(frames * parts.stft_window)
        magnitudes = (spectra.real.square() + spectra.imag.square()).sqrt_()  # (count, 4, 129)
        encoded = magnitudes.reshape(count, -1)
        for matrix, bias in parts.encoder:
            encoded = torch.addmm(bias, encoded, matrix).relu_()
        features[first : first + count] = encoded  # (count, 128)
    return features


def framewise_speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Silero's own frame-by-frame loop (one 512-sample window per call, its
    state carried in the model): what speech_probabilities must agree with,
    for the tests and bench/vad.py."""
    model = load_vad()
    n_frames = math.ceil(len(samples) / VAD_FRAME_SAMPLES)
    padded = np.zeros(n_frames * VAD_FRAME_SAMPLES, dtype=np.float32)
    padded[: len(samples)] = samples
    frames = torch.from_numpy(padded).reshape(n_frames, 1, VAD_FRAME_SAMPLES)
    model.reset_states()
    with _one_cpu_thread(torch.device("cpu")), torch.inference_mode():
        probs = [model(frame, SAMPLE_RATE).item() for frame in frames]
    return np.array(probs, dtype=np.float32)


def vad_applies(n_samples: int) -> bool:
    """Silero decides for clips this long; shorter ones go by energy (_short_clip)."""
    return n_samples >= _VAD_MIN_SECONDS * SAMPLE_RATE


def segment_channel(
    samples: np.ndarray,
    channel: int,
    lengths: SegmentationSettings,
    *,
    join_gap_seconds: float = 2.0,
    device: str = "cpu",
    vad: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[list[Segment], np.ndarray]:
    """Segments of one 16 kHz channel and its speech mask (one bool per
    MASK_FRAME_SECONDS frame, for quality.measure).

    Regions closer than `lengths.merge_gap_seconds` are merged while the
    result stays within `lengths.target_seconds`; a piece shorter than
    `lengths.min_seconds` is also joined across a pause of up to
    `join_gap_seconds` (a longer pause on one channel usually means the other
    party spoke). Pieces over `lengths.max_seconds` are cut into equal parts
    of at most `lengths.target_seconds`; isolated bits under 0.3 s are dropped.

    Silero runs on `device`; `vad`, when given, replaces it (samples in, one
    speech probability per frame out).
    """
    if not vad_applies(len(samples)):
        regions, mask = _short_clip(samples)
    else:
        probs = vad(samples) if vad is not None else speech_probabilities(samples, device)
        regions, mask = _vad_regions(probs, len(samples))
    pieces = _pack(regions, lengths.min_seconds, lengths.target_seconds, lengths.merge_gap_seconds, join_gap_seconds)
    segments = [
        Segment(channel, round(start, 3), round(end, 3))
        for piece in pieces
        for start, end in _split_evenly(*piece, lengths.max_seconds, lengths.target_seconds)
        if end - start >= _MIN_KEEP_SECONDS
    ]
    return segments, mask


def _vad_regions(probs: np.ndarray, n_samples: int) -> tuple[list[tuple[float, float]], np.ndarray]:
    # Short minimums here: merging, packing and the 0.3 s floor come later,
    # where neighbouring regions are known.
    stamps = _silero().get_speech_timestamps_from_probs(
        probs.tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=_THRESHOLD,
        min_speech_duration_ms=100,
        min_silence_duration_ms=100,
        speech_pad_ms=30,
        audio_length_samples=n_samples,
    )
    mask = np.zeros(len(probs), dtype=bool)
    for stamp in stamps:
        mask[stamp["start"] // VAD_FRAME_SAMPLES : -(-stamp["end"] // VAD_FRAME_SAMPLES)] = True
    regions = [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
    return regions, mask


def _short_clip(samples: np.ndarray) -> tuple[list[tuple[float, float]], np.ndarray]:
    """A very short clip is one region if it is louder than near-silence."""
    n_frames = math.ceil(len(samples) / VAD_FRAME_SAMPLES)
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if rms <= 10 ** (_SHORT_CLIP_SPEECH_DBFS / 20):
        return [], np.zeros(n_frames, dtype=bool)
    return [(0.0, len(samples) / SAMPLE_RATE)], np.ones(n_frames, dtype=bool)


def _pack(
    regions: list[tuple[float, float]],
    min_seconds: float,
    target_max_seconds: float,
    merge_gap_seconds: float,
    join_gap_seconds: float,
) -> list[tuple[float, float]]:
    pieces: list[tuple[float, float]] = []
    for start, end in regions:
        if pieces:
            last_start, last_end = pieces[-1]
            gap = start - last_end
            short = last_end - last_start < min_seconds or end - start < min_seconds
            if end - last_start <= target_max_seconds and (
                gap <= merge_gap_seconds or (short and gap <= join_gap_seconds)
            ):
                pieces[-1] = (last_start, end)
                continue
        pieces.append((start, end))
    return pieces


def _split_evenly(
    start: float, end: float, hard_max_seconds: float, target_max_seconds: float
) -> list[tuple[float, float]]:
    if end - start <= hard_max_seconds:
        return [(start, end)]
    parts = math.ceil((end - start) / target_max_seconds)
    step = (end - start) / parts
    return [(start + i * step, start + (i + 1) * step) for i in range(parts)]
