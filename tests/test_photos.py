"""Thumbnails: made small, kept through spool, batch and mirror, read only by request id.

Plumbing tests use synthetic pictures (through the real logger and a sqlite MLflow
store); the size and decodability checks use real food10 photos when present.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nutrilearn.monitoring import photos
from nutrilearn.tracking.reader import PredictionReader
from nutrilearn.tracking.records import SHADOW_SUFFIX, InvalidRecord, check_prediction
from nutrilearn.vision.thumbnails import MAX_SIDE, make_thumbnail
from tracking_fixtures import T0, make_record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
pytest_plugins = ["tracking_fixtures"]

FOOD10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "food10"


def picture(i: int, size=(300, 200)) -> Image.Image:
    """A distinct synthetic picture: colour blocks seeded by ``i``."""
    rng = np.random.default_rng(i)
    blocks = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)


def with_thumbnail(i: int, **kw):
    rec = make_record(i, error=False, **kw)
    rec.thumbnail = make_thumbnail(picture(i))
    return rec


def test_thumbnail_is_small_webp_within_128_px():
    for size in [(300, 200), (90, 1000), (64, 48), (4000, 3000)]:
        data = make_thumbnail(picture(1, size))
        img = Image.open(io.BytesIO(data))
        assert img.format == "WEBP" and max(img.size) <= MAX_SIDE
        assert max(img.size) == min(MAX_SIDE, max(size))  # fitted, never enlarged
        assert abs(img.size[0] / img.size[1] - size[0] / size[1]) < 0.1  # aspect kept
        assert len(data) <= 8_000


def test_record_check_refuses_what_is_not_a_thumbnail():
    rec = with_thumbnail(1)
    check_prediction(rec)
    for bad in (b"x" * 20_000, b"not an image at all", b"", "text"):
        rec.thumbnail = bad
        with pytest.raises(InvalidRecord, match="thumbnail"):
            check_prediction(rec)


def _rewrite_without_thumbnails(reader: PredictionReader) -> None:
    """Make the mirror's day files look like a store from before thumbnails existed."""
    for path in reader.mirror.files("predictions"):
        pq.write_table(pq.read_table(path).drop_columns(["thumbnail"]), path)


def test_thumbnails_by_request_id_across_old_files_mirror_and_spool(tracking, loggers):
    reader = PredictionReader(tracking)
    logger = loggers(tracking, batch_max_records=10, start=False)
    old = [make_record(i, error=False, when=T0 + timedelta(hours=i)) for i in range(10)]
    for rec in old:
        logger.submit(rec)
    assert logger.flush(timeout=120)
    reader.refresh()
    _rewrite_without_thumbnails(reader)
    assert photos.thumbnails(reader, [r.request_id for r in old]) == {}  # an old store still reads
    assert reader.history.rows(columns=("request_id", "thumbnail"))["thumbnail"].isna().all()

    new = [with_thumbnail(i, when=T0 + timedelta(days=1, hours=i)) for i in range(10, 30)]
    for rec in new[:10]:
        logger.submit(rec)
    assert logger.flush(timeout=120)
    for rec in new[10:]:  # these stay in the spool
        logger.submit(rec)
    reader.refresh()

    asked = [r.request_id for r in (old[0], new[0], new[15], new[3])] + ["no-such-id", "x' OR '1'='1"]
    got = photos.thumbnails(reader, asked)
    assert list(got) == [new[0].request_id, new[15].request_id, new[3].request_id]
    for rec in (new[0], new[15], new[3]):
        assert got[rec.request_id] == rec.thumbnail
    # A challenger's shadow answer shows its champion's photo; a window narrows the days read.
    shadow = new[2].request_id + SHADOW_SUFFIX
    assert photos.thumbnails(reader.history, [shadow]) == {shadow: new[2].thumbnail}
    assert photos.thumbnails(reader, [new[0].request_id], start=T0, end=T0 + timedelta(hours=12)) == {}
    reader.close()


@pytest.mark.skipif(not FOOD10.is_dir(), reason="real photos need ../shared/data/food10")
def test_real_photo_thumbnails_are_decodable_and_small():
    from nutrilearn.vision.images import decode_image

    files = sorted(FOOD10.glob("test/*/*.jpg"))[::25]
    assert len(files) >= 10
    sizes = []
    for f in files:
        data = make_thumbnail(decode_image(f.read_bytes(), 20_000_000, 40_000_000).image)
        img = Image.open(io.BytesIO(data))
        img.load()
        assert img.format == "WEBP" and max(img.size) == MAX_SIDE
        sizes.append(len(data))
    assert max(sizes) <= 8_000 and np.median(sizes) <= 4_000, sizes
