"""Every kind of bad or unusual input: a correct prediction or a clear per-file error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from nutrilearn.config import Settings
from nutrilearn.pipeline import Analyzer, ModelInfo, Photo
from nutrilearn.vision import images as I
from tests.conftest import image_bytes

LIMITS = dict(max_bytes=5_000_000, max_pixels=20_000_000)


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", "empty_file"),
        (b"hello, I am a text file\n" * 10, "not_an_image"),
        (b"%PDF-1.4\n" + b"0" * 100, "not_an_image"),
        (image_bytes(mode="noise", fmt="JPEG")[:20_000], "truncated_image"),
        (image_bytes(mode="noise", fmt="PNG")[:20_000], "truncated_image"),
        (b"\x00" * 7_000_000, "file_too_large"),
    ],
    ids=["empty", "text", "pdf", "truncated-jpeg", "truncated-png", "over-limit"],
)
def test_bad_files_get_a_named_error(data, kind):
    with pytest.raises(I.ImageError) as err:
        I.decode_image(data, **LIMITS)
    assert err.value.kind == kind
    assert str(err.value)


def test_decompression_bomb_is_refused_before_decoding():
    # 10,000 x 10,000 of one colour: a tiny PNG that would decode to 300 MB.
    bomb = image_bytes(mode="L", size=(10_000, 10_000), fmt="PNG", optimize=True)
    assert len(bomb) < 1_000_000
    with pytest.raises(I.ImageTooLargeError, match="limit is 20 megapixels"):
        I.decode_image(bomb, **LIMITS)


@pytest.mark.parametrize(
    "mode, fmt",
    [("CMYK", "JPEG"), ("L", "PNG"), ("I;16", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("P", "GIF"), ("RGB", "WEBP")],
)
def test_unusual_modes_become_rgb(mode, fmt):
    decoded = I.decode_image(image_bytes(mode=mode, fmt=fmt), **LIMITS)
    assert decoded.image.mode == "RGB" and decoded.format == fmt


def test_sixteen_bit_greyscale_keeps_its_range():
    decoded = I.decode_image(image_bytes(mode="I;16", size=(64, 64), fmt="PNG"), **LIMITS)
    arr = np.asarray(decoded.image)
    assert arr.min() < 10 and arr.max() > 245  # not clipped to white


def test_transparency_is_flattened_onto_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    buf = io.BytesIO()
    img.save(buf, "PNG")
    decoded = I.decode_image(buf.getvalue(), **LIMITS)
    assert np.asarray(decoded.image)[0, 0].tolist() == [255, 255, 255]


def test_animated_gif_uses_its_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = I.decode_image(buf.getvalue(), **LIMITS)
    r, g, b = np.asarray(decoded.image)[8, 8]
    assert r > 200 and b < 50


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = I.decode_image(buf.getvalue(), **LIMITS)
    assert decoded.image.size == (20, 40)
    arr = np.asarray(decoded.image.convert("L"))
    assert arr[:15].mean() > 200 and arr[-15:].mean() < 50  # left half is now the top


def test_image_stats_see_darkening():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    bright = I.image_stats(pixels, 1.0)
    dark = I.image_stats((pixels * 0.6).astype(np.uint8), 1.0)
    assert dark.brightness == pytest.approx(bright.brightness * 0.6, rel=0.02)
    assert dark.contrast < bright.contrast and dark.sharpness < bright.sharpness


def test_image_stats_saturation_is_hsv_saturation():
    """The fast channel max/min gives HSV saturation exactly, black pixels included."""
    import colorsys

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    pixels[:10] = 0  # black: saturation 0
    want = np.mean([colorsys.rgb_to_hsv(*(p / 255.0))[1] for p in pixels.reshape(-1, 3)])
    assert I.image_stats(pixels, 1.0).saturation == pytest.approx(want, abs=1e-6)


def test_a_batch_with_bad_files_goes_on(classifier, tmp_path):
    analyzer = Analyzer(classifier, ModelInfo(), Settings.from_env())
    photos = [
        Photo("a.png", image_bytes(fmt="PNG")),
        Photo("b.txt", b"not an image"),
        Photo("c.jpg", image_bytes(mode="CMYK", fmt="JPEG")),
        Photo("../../etc/passwd", b""),
    ]
    records = analyzer.analyze(photos, user="t", source="cli", batch_size=2)
    assert [r.status for r in records] == ["ok", "error", "ok", "error"]
    assert [r.error_type for r in records] == [None, "not_an_image", None, "empty_file"]
    assert records[3].filename == "passwd"  # a name, never a path
    ok = records[0]
    assert ok.label and 0 < ok.confidence <= 1 and len(ok.top5_labels) == 5
    assert sum(ok.top5_probs) <= 1.0 + 1e-9 and ok.top5_probs == sorted(ok.top5_probs, reverse=True)
    assert len(ok.embedding) == 256 and ok.total_ms >= ok.inference_ms > 0


def test_big_jpeg_decodes_at_reduced_scale_but_reports_its_size():
    big = image_bytes(mode="noise", size=(4000, 3000), fmt="JPEG")
    decoded = I.decode_image(big, max_bytes=50_000_000, max_pixels=40_000_000)
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert min(decoded.image.size) >= I.DRAFT_MIN_SIDE and decoded.image.width < 4000
    assert I.crop_and_resize(decoded.image).shape == (224, 224, 3)


def test_normalise_into_a_buffer_is_the_trained_range_bit_for_bit():
    """Serving normalises photo by photo into the interpreter's buffer: the same floats as
    the definition, (x - 127) / 128 in float32, and as ``normalise``."""
    every_value = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    rng = np.random.default_rng(0)
    for pixels in (every_value, rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
                   rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)[:, :, ::-1]):  # not contiguous
        out = np.full(pixels.shape, np.nan, np.float32)
        assert I.normalise_into(pixels, out) is out
        want = (pixels.astype(np.float32) - np.float32(127.0)) / np.float32(128.0)
        assert want.dtype == out.dtype == np.float32 and np.array_equal(out, want)
        assert np.array_equal(I.normalise(pixels), want)
    assert I.normalise_into(every_value, np.empty((16, 16, 3), np.float32))[0, 0, 0] == -127.0 / 128.0
