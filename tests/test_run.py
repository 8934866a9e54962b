"""A run folder answers for its files: settings, checkpoint, metrics, origin, freshness."""

import json
import os

import pytest

from xspecvae.errors import InputError
from xspecvae.run import Run


def test_a_trained_run_answers_for_its_files(small_run, tmp_path):
    run = Run(small_run)
    assert run.started and run.trained and not run.legacy
    settings = run.settings()
    assert settings["options"]["epochs"] == 2 and len(settings["run_id"]) == 32
    metrics = run.metrics()
    assert list(metrics["epoch"]) == [1.0, 2.0] and run.epochs_done() == 2
    assert run.origin() == settings  # learnt from scratch: its own settings
    product = tmp_path / "table.fits"
    assert not run.is_current(product)  # absent
    product.write_text("made after the model")
    assert run.is_current(product)
    os.utime(product, (run.built() - 10, run.built() - 10))  # older than the model
    assert not run.is_current(product)


def test_origin_follows_fine_tuning_to_the_run_that_learnt_from_scratch(tmp_path):
    first, second, third = (Run(tmp_path / name) for name in ("a", "b", "c"))
    first.write_settings({"pack": "sim.h5", "init": None})
    second.write_settings({"pack": "real.h5", "init": str(first.folder)})
    third.write_settings({"pack": "real2.h5", "init": str(second.folder)})
    assert third.origin()["pack"] == "sim.h5"


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    empty = Run(tmp_path / "nothing")
    assert not empty.started and not empty.trained and empty.metrics() == {}
    with pytest.raises(InputError, match="not a run folder") as err:
        empty.settings()
    assert err.value.path == str(empty.folder)
    broken = Run(tmp_path / "broken")
    broken.folder.mkdir()
    broken.settings_path.write_text("{ not json")
    with pytest.raises(InputError, match="unreadable"):
        broken.settings()
    broken.write_settings({"a": 1})
    assert json.loads(broken.settings_path.read_text()) == {"a": 1}
