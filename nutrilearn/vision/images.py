"""Decode untrusted image bytes safely, and turn a photo into the network's input.

Every failure is an ``ImageError`` with a short machine ``kind`` (logged as the error
type) and a message a person can act on; nothing else escapes ``decode_image``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageFilter, ImageOps, UnidentifiedImageError

INPUT_SIZE = 224
CROP_FRACTION = 0.875
DRAFT_MIN_SIDE = 2 * INPUT_SIZE
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})

# Never decode half a file silently: a truncated JPEG must be an error, not grey pixels.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """A file that cannot be used as a photo; ``kind`` names the reason."""

    kind = "invalid_image"

    def __init__(self, message: str):
        super().__init__(message)


class EmptyFileError(ImageError):
    kind = "empty_file"


class FileTooLargeError(ImageError):
    kind = "file_too_large"


class NotAnImageError(ImageError):
    kind = "not_an_image"


class TruncatedImageError(ImageError):
    kind = "truncated_image"


class ImageTooLargeError(ImageError):
    kind = "image_too_large"


@dataclass(frozen=True)
class DecodedImage:
    """An upright 8-bit RGB photo (large JPEGs decoded at reduced scale) and what it was."""

    image: Image.Image
    width: int
    height: int
    format: str
    n_bytes: int


@dataclass(frozen=True)
class ImageStats:
    """Cheap properties of the model's view of the photo, for input drift."""

    brightness: float  # mean luma, 0-1
    contrast: float  # std of luma, 0-1
    saturation: float  # mean HSV saturation, 0-1
    sharpness: float  # variance of the Laplacian of luma (0-255 scale)
    aspect: float  # original width / height


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any mode PIL can open -> 8-bit RGB; transparency is flattened onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")  # no copy of a photo already RGB


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> DecodedImage:
    """Bytes from a user -> upright RGB image, or an ``ImageError`` saying why not."""
    n_bytes = len(data)
    if n_bytes == 0:
        raise EmptyFileError("the file is empty")
    if n_bytes > max_bytes:
        raise FileTooLargeError(
            f"the file is {n_bytes / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB "
            "(set NUTRILEARN_MAX_UPLOAD_BYTES to change it)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = (img.format or "").upper()
            width, height = img.size
            if fmt not in ALLOWED_FORMATS:
                raise NotAnImageError(f"{fmt or 'this'} files are not supported; upload JPEG, PNG or WebP")
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}x{height} pixels; the limit is {max_pixels / 1e6:.0f} megapixels"
                )
            # Animated files open at their first frame, which stands for the file. (Asking
            # n_frames would walk every frame of an untrusted file; fuzzing crashed it.)
            if fmt in ("JPEG", "MPO"):
                # Let libjpeg decode big photos at 1/2..1/8 scale (DCT scaling), keeping the
                # shorter side >= DRAFT_MIN_SIDE: a 12 MP phone photo decodes ~10x faster.
                # Photos under twice that size decode in full, bit-exact with the reference.
                img.draft("RGB", (max(1, width * DRAFT_MIN_SIDE // min(width, height)),
                                  max(1, height * DRAFT_MIN_SIDE // min(width, height))))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # ours to change: saves a copy (~0.3 ms)
            rgb = _to_rgb(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"the image is too large to decode safely; the limit is {max_pixels / 1e6:.0f} megapixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError("this file is not an image PIL can read; upload JPEG, PNG or WebP") from exc
    except (OSError, SyntaxError, EOFError) as exc:
        message = str(exc)
        if "truncated" in message or "broken data stream" in message or isinstance(exc, EOFError):
            raise TruncatedImageError(f"the image file is truncated or damaged ({message})") from exc
        raise NotAnImageError(f"the image could not be decoded ({message})") from exc
    except Exception as exc:  # decoders of untrusted bytes fail in many ways (IndexError, struct.error, ...)
        raise NotAnImageError(f"the image could not be decoded ({type(exc).__name__}: {exc})") from exc
    # Report the photo's own size (not the draft's), upright like the pixels.
    upright = (width, height) if (rgb.width >= rgb.height) == (width >= height) else (height, width)
    return DecodedImage(rgb, *upright, fmt, n_bytes)


def crop_and_resize(img: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """Centre crop 87.5% of the shorter side, bicubic resize: uint8 (size, size, 3)."""
    w, h = img.size
    side = max(1, int(round(CROP_FRACTION * min(w, h))))
    left, top = (w - side) // 2, (h - side) // 2
    out = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)  # matches the reference preprocessing bit for bit


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB -> the float range these weights were trained on: (x - 127) / 128."""
    return normalise_into(pixels, np.empty(np.shape(pixels), np.float32))


def normalise_into(pixels: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``normalise``, written into ``out`` (float32, same shape): the one definition.

    LiteRT normalises one photo at a time into a buffer each interpreter keeps: no
    batch-sized float arrays (three of them per chunk cost ~0.2 ms a photo in allocation and
    memory traffic). uint8 -> float32 and x - 127 are exact, and x * 2**-7 == x / 128.
    """
    np.subtract(pixels, np.float32(127.0), out=out, dtype=np.float32)
    np.multiply(out, np.float32(1.0 / 128.0), out=out)
    return out


def image_stats(pixels: np.ndarray, aspect: float) -> ImageStats:
    """Statistics of the 224x224 crop the model sees (cheap: ~1 ms)."""
    rgb = pixels.astype(np.float32) / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    # Channel max/min as two elementwise passes: numpy's reduction over a last axis of 3
    # costs ~4 ms here, more than the decode. Same values (x / 255 is monotonic).
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    mx = np.maximum(np.maximum(r, g), b).astype(np.float32) / 255.0
    mn = np.minimum(np.minimum(r, g), b).astype(np.float32) / 255.0
    saturation = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    lum255 = luma * 255.0
    lap = (
        -4.0 * lum255[1:-1, 1:-1]
        + lum255[:-2, 1:-1]
        + lum255[2:, 1:-1]
        + lum255[1:-1, :-2]
        + lum255[1:-1, 2:]
    )
    return ImageStats(
        brightness=float(luma.mean()),
        contrast=float(luma.std()),
        saturation=float(saturation.mean()),
        sharpness=float(lap.var()),
        aspect=float(aspect),
    )
