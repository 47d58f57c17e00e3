import numpy as np
import pytest
import soundfile as sf

from common.data.audio import AudioReadError, audio_duration, load_audio


def sine(sr, seconds, freq=440.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_bit_depth_decodes_to_float_mono(tmp_path, subtype):
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, sine(22050, 0.5), 22050, subtype=subtype)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 8000) <= 1
    rms = np.sqrt(np.mean(audio[100:-100] ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.03)  # scale preserved whatever the depth


@pytest.mark.parametrize("name, channels", [("mono.wav", 1), ("stereo.wav", 2), ("mono.flac", 1)])
def test_16_bit_files_give_libsndfiles_own_samples(tmp_path, name, channels):
    """16-bit PCM is read as integers and scaled by us (faster): the samples
    must be exactly libsndfile's float conversion, extremes included."""
    x = np.concatenate([sine(16000, 0.3, channels=channels), np.full((3, channels), -1.0)[:, :channels].squeeze(),
                        np.full((3, channels), 32767 / 32768)[:, :channels].squeeze()])
    sf.write(tmp_path / name, x, 16000, subtype="PCM_16")
    expected = sf.read(tmp_path / name, dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    np.testing.assert_array_equal(load_audio(tmp_path / name, 16000), expected)
    np.testing.assert_array_equal(load_audio(tmp_path / name, 16000, start=0.1, end=0.2), expected[1600:3200])


def test_stereo_is_mixed_and_rates_are_converted(tmp_path):
    left_right = np.stack([sine(8000, 1.0), np.zeros(8000)], axis=1)
    sf.write(tmp_path / "s.wav", left_right, 8000)
    audio = load_audio(tmp_path / "s.wav", 32000)
    assert len(audio) == 32000
    assert np.sqrt(np.mean(audio[500:-500] ** 2)) == pytest.approx(0.25 / np.sqrt(2), rel=0.03)
    sf.write(tmp_path / "x.flac", sine(48000, 0.25), 48000)
    assert len(load_audio(tmp_path / "x.flac", 16000)) == 4000


def test_segments_and_short_clips(tmp_path):
    sf.write(tmp_path / "long.wav", sine(4000, 10.0), 4000)
    segment = load_audio(tmp_path / "long.wav", 16000, start=2.5, end=4.0)
    assert len(segment) == 24000
    assert audio_duration(tmp_path / "long.wav") == pytest.approx(10.0)
    sf.write(tmp_path / "tiny.wav", sine(16000, 0.001), 16000)
    assert len(load_audio(tmp_path / "tiny.wav", 16000)) == 16


def test_unreadable_file_names_itself(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioReadError, match="broken.wav"):
        load_audio(bad, 16000)
