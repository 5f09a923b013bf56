"""Thumbnails: made small, kept through spool, batch and mirror, read only by request id.

Plumbing tests use synthetic pictures (through the real logger and a sqlite MLflow
store); the size and decodability checks use real food10 photos when present.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nutrilearn.monitoring import photos
from nutrilearn.tracking.mirror import Mirror
from nutrilearn.tracking.reader import PredictionReader
from nutrilearn.tracking.records import SHADOW_SUFFIX, InvalidRecord, check_prediction
from nutrilearn.vision.thumbnails import MAX_SIDE, make_thumbnail
from tracking_fixtures import T0, make_feedback, make_record

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


def test_thumbnail_shows_the_whole_photo_not_the_models_crop():
    """Edges the centre crop drops (a 4% strip each side) are in the thumbnail, at its edges;
    the picture is the full photo box-filtered down (to within rounding), in its aspect."""
    for size in [(512, 384), (382, 512), (1000, 750), (4000, 3000), (300, 200)]:
        w, h = size
        arr = np.zeros((h, w, 3), np.uint8)
        arr[:, :] = (0, 160, 0)
        strip = max(1, w * 4 // 100)
        arr[:, :strip] = (255, 0, 0)
        arr[:, w - strip:] = (0, 0, 255)
        arr[: h // 2, strip : w - strip, 0] = 200  # a top half the thumbnail must keep apart
        photo = Image.fromarray(arr)
        img = Image.open(io.BytesIO(make_thumbnail(photo)))
        img.load()
        assert img.format == "WEBP" and max(img.size) == MAX_SIDE
        assert abs(img.size[0] / img.size[1] - w / h) < 0.02
        got = np.asarray(img.convert("RGB"), np.float64)
        assert got[:, 0, 0].mean() > 150 and got[:, 0, 2].mean() < 100  # the left strip, red
        assert got[:, -1, 2].mean() > 150 and got[:, -1, 0].mean() < 100  # the right strip, blue
        want = np.asarray(photo.resize(img.size, Image.Resampling.BOX), np.float64)
        assert np.abs(got - want).mean() < 8, size  # the whole photo (WebP at quality 70)


def test_jpeg_thumbnails_where_pillow_has_no_webp(monkeypatch):
    from nutrilearn.vision import thumbnails

    monkeypatch.setattr(thumbnails, "FORMAT", "JPEG")
    rec = make_record(1, error=False)
    rec.thumbnail = make_thumbnail(picture(1, (640, 480)))
    assert Image.open(io.BytesIO(rec.thumbnail)).format == "JPEG" and len(rec.thumbnail) <= 8_000
    check_prediction(rec)
    assert photos.data_url(rec.thumbnail).startswith("data:image/jpeg;base64,")


def test_record_check_refuses_what_is_not_a_thumbnail():
    rec = with_thumbnail(1)
    check_prediction(rec)
    for bad in (b"x" * 20_000, b"not an image at all", b"", "text"):
        rec.thumbnail = bad
        with pytest.raises(InvalidRecord, match="thumbnail"):
            check_prediction(rec)


def test_thumbnails_by_request_id_across_old_files_mirror_and_spool(tracking, loggers, monkeypatch):
    reader = PredictionReader(tracking)
    logger = loggers(tracking, batch_max_records=10, start=False)
    old = [make_record(i, error=False, when=T0 + timedelta(hours=i)) for i in range(10)]
    for rec in old:
        logger.submit(rec)
    assert logger.flush(timeout=120)
    with monkeypatch.context() as m:  # day files as a mirror from before thumbnails wrote them
        write = Mirror._write
        m.setattr(Mirror, "_write", lambda self, table, rel: write(self, table.drop_columns(["thumbnail"]), rel))
        reader.refresh()
    assert not any("thumbnail" in pq.read_schema(f).names for f in reader.mirror.files("predictions"))
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
    # With each id's time, ids days apart are looked up apart (each on its own days), an id
    # without a time over the given window: the same answer as one lookup over everything.
    far = with_thumbnail(99, when=T0 + timedelta(days=9))
    logger.submit(far)
    assert logger.flush(timeout=120)
    reader.refresh()
    asked = [new[0].request_id, far.request_id, new[15].request_id, "no-such-id"]
    times = [new[0].timestamp, far.timestamp, None, None]
    spans = []
    query = reader.history.query
    with monkeypatch.context() as m:
        m.setattr(reader.history, "query", lambda kind, window, *a: spans.append((window.start, window.end))
                  or query(kind, window, *a))
        assert photos.thumbnails(reader, asked, times=times) == photos.thumbnails(reader, asked)
    assert spans[:3] == [(None, None), photos.time_span([new[0].timestamp]), photos.time_span([far.timestamp])]
    with pytest.raises(ValueError, match="times has 1 entries for 4"):
        photos.thumbnails(reader, asked, times=times[:1])
    reader.close()


def test_time_groups_split_where_times_are_far_apart():
    ids = ["a", "b", "c", "d", "e"]
    times = [T0 + timedelta(hours=30), T0, None, T0 + timedelta(hours=20), T0 + timedelta(days=5)]
    groups = photos.time_groups(ids, times, start=T0, end=T0 + timedelta(days=9))
    assert [g[0] for g in groups] == [["c"], ["b", "d", "a"], ["e"]]
    assert groups[0][1:] == (T0, T0 + timedelta(days=9))
    assert groups[1][1:] == photos.time_span([T0, T0 + timedelta(hours=30)])
    assert photos.times_of(["a", "zz"], pd.DataFrame({"request_id": ["a"], "timestamp": [T0]})) == [T0, None]


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


def _food10_photos(food10: Path, step: int = 50):
    from nutrilearn.pipeline import photos_from_paths

    return [p for _, p in photos_from_paths(sorted(food10.glob("test/*/*.jpg"))[::step])]


def test_pipeline_keeps_thumbnails_through_spool_batch_and_mirror_and_off_keeps_none(
        tracking, loggers, classifier, food10, monkeypatch, tmp_path):
    """Real photos through the real model and logger: thumbnails in the batch Parquet's own
    column and the mirror's day files; with NUTRILEARN_KEEP_THUMBNAILS=0 none anywhere."""
    from nutrilearn.cli import main
    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Analyzer, ModelInfo, Photo
    from nutrilearn.tracking import store

    photos_in = _food10_photos(food10) + [Photo("broken.jpg", b"\xff\xd8\xff not really a jpeg")]
    logger = loggers(tracking, batch_max_records=100, start=False)
    records = Analyzer(classifier, ModelInfo(), tracking, logger).analyze(photos_in, user="t", batch_size=4)
    ok = [r for r in records if r.ok]
    assert len(ok) == len(photos_in) - 1 and records[-1].status == "error" and records[-1].thumbnail is None
    for rec in ok:
        img = Image.open(io.BytesIO(rec.thumbnail))
        assert img.format == "WEBP" and max(img.size) == MAX_SIDE and len(rec.thumbnail) <= 8_000
    assert logger.flush(timeout=120)

    reader = PredictionReader(tracking)
    run_id = reader.batches()["run_id"].iloc[0]
    artifacts = store.local_artifact_dir(store.make_client(tracking.tracking_uri).get_run(run_id).info.artifact_uri)
    batch = pq.read_table(artifacts / store.ARTIFACTS["predictions"])
    assert batch.schema.field("thumbnail").type == "binary"
    assert batch.column("thumbnail").drop_null().length() == len(ok)
    day_files = reader.mirror.files("predictions")
    assert day_files and all("thumbnail" in pq.read_schema(f).names for f in day_files)
    kept = photos.thumbnails(reader, [r.request_id for r in records])
    assert kept == {r.request_id: r.thumbnail for r in ok}

    # export-predictions: a thumbnail column of image bytes (and none with --no-thumbnails)
    out = tmp_path / "export.parquet"
    assert main(["export-predictions", "-o", str(out)]) == 0
    exported = pd.read_parquet(out).set_index("request_id")
    for rec in ok:
        assert Image.open(io.BytesIO(exported.at[rec.request_id, "thumbnail"])).size == Image.open(
            io.BytesIO(rec.thumbnail)).size
    assert main(["export-predictions", "-o", str(out), "--no-thumbnails"]) == 0
    assert "thumbnail" not in pd.read_parquet(out).columns
    reader.close()

    monkeypatch.setenv("NUTRILEARN_KEEP_THUMBNAILS", "0")
    off = Settings.from_env()
    assert not off.keep_thumbnails
    logger_off = loggers(off, batch_max_records=100, start=False)
    quiet = Analyzer(classifier, ModelInfo(), off, logger_off).analyze(photos_in[:4], user="t")
    assert all(r.ok and r.thumbnail is None for r in quiet)
    assert logger_off.flush(timeout=120)
    reader = PredictionReader(off)
    assert photos.thumbnails(reader, [r.request_id for r in quiet]) == {}
    reader.close()


def test_keep_thumbnails_setting_parses(monkeypatch):
    from nutrilearn.config import Settings

    for raw, expected in (("", True), ("1", True), ("true", True), ("0", False), ("off", False)):
        monkeypatch.setenv("NUTRILEARN_KEEP_THUMBNAILS", raw)
        assert Settings.from_env().keep_thumbnails is expected
    monkeypatch.setenv("NUTRILEARN_KEEP_THUMBNAILS", "maybe")
    with pytest.raises(ValueError, match="NUTRILEARN_KEEP_THUMBNAILS"):
        Settings.from_env()


@pytest.fixture
def gallery_store(tracking, loggers):
    """60 served answers over two UTC days with thumbnails, a challenger's shadow answer to
    every third (disagreeing on every sixth), feedback on every fifth (correcting every tenth);
    40 flushed and mirrored, the rest in the spool. Returns the reader and the records."""
    logger = loggers(tracking, batch_max_records=20, start=False)
    served, shadows, feedback = [], [], []
    for i in range(60):
        rec = with_thumbnail(i, when=T0 + timedelta(minutes=45 * i), source="replay" if i == 7 else "app")
        served.append(rec)
        if i % 3 == 0:
            sh = make_record(i, error=False, model_version="2", when=rec.timestamp)
            sh.request_id, sh.label, sh.confidence = rec.request_id + SHADOW_SUFFIX, rec.label, 0.5
            if i % 6 == 0:
                sh.label = "guacamole" if rec.label != "guacamole" else "pizza"
            shadows.append(sh)
        if i % 5 == 0:
            fb = make_feedback(rec, label="espresso" if i % 10 == 0 and rec.label != "espresso" else rec.label)
            feedback.append(fb)
    for rec in served[:40] + [s for s in shadows if s.timestamp < served[40].timestamp]:
        logger.submit(rec)
    for fb in feedback[:5]:
        logger.submit_feedback(fb)
    assert logger.flush(timeout=120)
    for rec in served[40:] + [s for s in shadows if s.timestamp >= served[40].timestamp]:
        logger.submit(rec)
    for fb in feedback[5:]:
        logger.submit_feedback(fb)
    reader = PredictionReader(tracking)
    reader.refresh()
    yield reader, served, shadows, feedback
    reader.close()


def test_galleries_choose_the_right_photos(gallery_store):
    from nutrilearn.monitoring.stats import Filters

    reader, served, shadows, feedback = gallery_store
    live = Filters(hide_replayed=True)
    frame = pd.DataFrame([r.to_row() for r in served if r.source != "replay"])

    low = photos.least_confident(reader, live, n=5)
    assert list(low["request_id"]) == list(frame.sort_values("confidence")["request_id"][:5])
    assert "thumbnail" not in low.columns
    food = frame["label"].value_counts().index[0]
    assert set(photos.least_confident(reader, live, n=100, food=food)["label"]) == {food}
    assert photos.least_confident(reader, live, food="x' OR '1'='1").empty

    per = photos.by_food(reader, live, per_food=2, foods=3)
    top3 = frame["label"].value_counts()
    assert list(dict.fromkeys(per["label"])) == sorted(top3.index[:3], key=lambda f: (-top3[f], f))
    for label, group in per.groupby("label"):
        assert list(group["request_id"]) == list(frame[frame["label"] == label].sort_values("confidence")["request_id"][:2])

    wrong = photos.mistakes(reader, Filters(hide_replayed=False), n=100)
    by_id = {r.request_id: r for r in served}
    expected = {fb.request_id for fb in feedback if fb.label != by_id[fb.request_id].label}
    assert set(wrong["request_id"]) == expected and len(expected) >= 4
    assert (wrong["true_label"] == "espresso").all() and (wrong["label"] != "espresso").all()
    assert list(wrong["confidence"]) == sorted(wrong["confidence"], reverse=True)  # confidently wrong first

    split = photos.disagreements(reader, Filters(hide_replayed=False), n=100)
    expected = {s.request_id.removesuffix(SHADOW_SUFFIX) for s in shadows
                if s.label != by_id[s.request_id.removesuffix(SHADOW_SUFFIX)].label}
    assert set(split["request_id"]) == expected and len(expected) == 10
    assert (split["challenger_label"] != split["label"]).all() and set(split["challenger_version"]) == {"2"}

    # Click-through: the record, its challenger's answer, its feedback and its photo.
    rid = sorted(expected)[0]
    rec = photos.record(reader, rid)
    assert rec.fields["label"] == by_id[rid].label and rec.challenger["label"] != rec.fields["label"]
    assert rec.thumbnail == by_id[rid].thumbnail
    assert photos.record(reader, rid + SHADOW_SUFFIX).request_id == rid
    assert photos.record(reader, "no-such-id") is None
    judged = photos.record(reader, feedback[1].request_id)
    assert judged.feedback["true_label"] == feedback[1].label

    table = photos.with_thumbnails(low, reader, time_column="timestamp")  # only the rows' days opened
    assert table["photo"].str.startswith("data:image/webp;base64,").all() and table.columns[0] == "photo"
    one = served[41]  # the narrowest span, one record's own time, still finds it (end exclusive)
    assert photos.thumbnails(reader, [one.request_id], **dict(zip(("start", "end"), photos.time_span([one.timestamp])))
                             ) == {one.request_id: one.thumbnail}


def test_photos_page_draws_galleries_and_opens_a_record(gallery_store):
    """The page (AppTest) over the gallery store: tiles with thumbnails, a tile's button opens its record."""
    from streamlit.testing.v1 import AppTest

    reader, served, shadows, feedback = gallery_store
    page = str(Path(__file__).resolve().parents[1] / "pages" / "photos.py")
    at = AppTest.from_file(page, default_timeout=120)
    at.run()
    at.selectbox(key="photos_period").set_value("All time")
    at.toggle(key="photos_hide_replayed").set_value(False)
    at.run()
    assert not at.exception and not at.error, (at.exception, at.error)
    captions = [c for img in at.get("image") for c in img.captions]
    assert len(captions) >= 24 and not any("no photo kept" in m.value for m in at.caption)
    assert any(c.startswith("said ") and " · true Espresso" in c for c in captions)  # mistakes: said vs true
    buttons = [b for b in at.button if b.key and b.key.startswith("photos-disagreements-")]
    assert len(buttons) == 10
    rid = buttons[0].key.removeprefix("photos-disagreements-")
    buttons[0].click()
    at.run()
    assert not at.exception, at.exception
    table = at.table[0].value["value"].to_dict()
    by_id = {r.request_id: r for r in served}
    assert table["request_id"] == rid and table["label"] == by_id[rid].label
    assert "challenger answer" in table and table["challenger answer"] != table["label"]


def test_figures_never_read_the_thumbnail_column(gallery_store, monkeypatch):
    """Every query the Monitoring, Drift and Models pages make, spied on at ``History.query``
    (the relation a query sees holds only the columns it names): the thumbnail column is
    named only by the lookup of Recent predictions' shown rows, by request id."""
    from streamlit.testing.v1 import AppTest

    from nutrilearn.monitoring.history import FIGURE_COLUMNS, History

    calls = []
    query = History.query

    def spy(self, kind, filters, columns, sql, params=(), *args, **kw):
        calls.append((tuple(columns), sql, list(params)))
        return query(self, kind, filters, columns, sql, params, *args, **kw)

    monkeypatch.setattr(History, "query", spy)
    assert "thumbnail" not in FIGURE_COLUMNS
    pages = Path(__file__).resolve().parents[1] / "pages"
    for name, widgets in (("monitoring", {"mon_period": "All time", "mon_hide_replayed": False}),
                          ("drift", {}), ("models", {})):
        calls.clear()
        at = AppTest.from_file(str(pages / f"{name}.py"), default_timeout=180)
        at.run()
        for key, value in widgets.items():
            next(w for kind in ("selectbox", "toggle") for w in at.get(kind) if w.key == key).set_value(value)
        at.run()
        assert calls or name == "models", f"{name} asked the history nothing"  # Models: no registry here
        photo_calls = [c for c in calls if "thumbnail" in c[0]]
        if name == "monitoring":
            assert photo_calls and all("request_id IN" in sql and len(params) <= 200 for _, sql, params in photo_calls)
            assert len(calls) > len(photo_calls)  # the figures' own reads, none of them with photos
        else:
            assert photo_calls == [], f"{name} read thumbnails"


def test_challenger_shadow_records_keep_no_thumbnail_of_their_own(classifier, food10):
    """A shadow answer is the same photo: the champion's record holds its thumbnail."""
    from nutrilearn.config import Settings
    from nutrilearn.pipeline import Analyzer, ModelInfo
    from nutrilearn.registry.routing import challenger_records
    from nutrilearn.vision.images import crop_and_resize, decode_image

    found = _food10_photos(food10, step=100)[:3]
    records = Analyzer(classifier, ModelInfo(), Settings()).analyze(found, user="t")
    assert all(r.thumbnail for r in records)
    crops = [crop_and_resize(decode_image(p.data, 20_000_000, 40_000_000).image) for p in found]
    shadows = challenger_records(records, classifier.features(np.stack(crops)), classifier,
                                 ModelInfo(version="2", alias="challenger"), share=1.0)
    assert len(shadows) == 3 and all(s.thumbnail is None for s in shadows)
    assert [photos.photo_id(s.request_id) for s in shadows] == [r.request_id for r in records]
