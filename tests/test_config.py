"""Configuration: the recipe's numbers are the defaults; overrides are typed and checked."""

import pytest

from labquake.config import Config, load_config
from labquake.models.folder import default_run_dir as run_dir
from labquake.models.folder import run_name
from labquake.util import LabquakeError


def test_recipe_defaults_are_the_recipe():
    cfg = load_config()
    assert cfg == Config(preset="recipe")
    assert (cfg.cv.n_splits, cfg.cv.shuffle, cfg.cv.seed) == (3, True, 1337)
    assert cfg.lgbm.seeds == tuple(range(10)) and cfg.lgbm.num_boost_round == 1_000_000
    assert (cfg.lgbm.objective, cfg.lgbm.num_leaves, cfg.lgbm.max_bin, cfg.lgbm.early_stopping_rounds) == ("fair", 4, 500, 1000)
    assert (cfg.nn.runs, cfg.nn.epochs, cfg.nn.batch_size, cfg.nn.learning_rate) == (8, 1000, 256, 0.008)
    assert cfg.nn.loss_weights == (8.0, 1.0, 1.0) and cfg.blend.clip_min == 0.1
    assert cfg.data.recipe_cycles == (0, 1, 2, 4, 7, 9, 10, 11, 13, 14)


def test_overrides_from_flags_and_toml(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[nn]\nruns = 3\n[lgbm]\nseeds = [5, 6]\nlearning_rate = 1\n")
    cfg = load_config("fast", toml, ["nn.runs=4", "data.train_cycles=[0, 2]"])
    assert cfg.preset == "fast"
    assert cfg.nn.runs == 4  # flags come after the file
    assert cfg.lgbm.seeds == (5, 6) and cfg.lgbm.learning_rate == 1.0
    assert cfg.data.train_cycles == (0, 2)
    assert load_config("recipe", None, ["data.train_cycles=null"]).data.train_cycles is None


@pytest.mark.parametrize(
    "sets,message",
    [
        (["nn.runs=x"], "nn.runs must be int"),
        (["nn.nope=1"], "unknown key 'nn.nope'"),
        (["nope.runs=1"], "unknown section 'nope'"),
        (["nn.runs"], "expected section.key=value"),
        (["lgbm.objective=3"], "lgbm.objective must be str"),
        # segments are Kaggle's 150,000 rows: the test files and the cache are cut that way
        (["data.segment_rows=100000"], "unknown key 'data.segment_rows'"),
    ],
)
def test_bad_overrides_are_one_line_errors(sets, message):
    with pytest.raises(LabquakeError, match=message):
        load_config("recipe", None, sets)


def test_bad_files_and_presets(tmp_path):
    with pytest.raises(LabquakeError, match="config file not found"):
        load_config("recipe", tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[nn\n")
    with pytest.raises(LabquakeError, match="bad.toml: not valid TOML"):
        load_config("recipe", bad)
    with pytest.raises(LabquakeError, match="unknown preset"):
        load_config("nope")


def test_section_hash_tracks_only_its_sections():
    a, b = load_config(), load_config("recipe", None, ["nn.runs=1"])
    assert a.section_hash("features", "data") == b.section_hash("features", "data")
    assert a.section_hash("nn") != b.section_hash("nn")


def test_run_folder_is_named_by_preset_and_settings(tmp_path):
    assert run_name(load_config()) == "recipe" and run_name(load_config("fast")) == "fast"
    assert run_name(load_config("fast", None, ["nn.runs=2"])) == "fast"  # the preset's own value
    changed = load_config("recipe", None, ["nn.runs=4"])
    assert run_name(changed).startswith("recipe-") and run_name(changed) == run_name(load_config("recipe", None, ["nn.runs=4"]))
    assert run_name(load_config("recipe", None, ["features.wavelet=db8"])) not in ("recipe", run_name(changed))
    # what a run does not depend on leaves the name alone
    assert run_name(load_config("recipe", None, ["blend.clip_min=0.5", f"paths.raw={tmp_path}"])) == "recipe"
    assert run_dir(load_config("recipe", None, [f"paths.models={tmp_path}"])) == tmp_path / "recipe"


def test_network_needs_at_least_one_run():
    with pytest.raises(LabquakeError, match="nn.runs must be >= 1"):
        load_config("recipe", None, ["nn.runs=0"])


def test_a_list_of_names_needs_no_quotes():
    """make and the shell strip the quotes of --set blend.models=["lgbm","nn","seq"]: both spellings work."""
    quoted = load_config("recipe", None, ['blend.models=["lgbm","nn","seq"]'])
    bare = load_config("recipe", None, ["blend.models=[lgbm, nn,seq]"])
    assert quoted.blend.models == bare.blend.models == ("lgbm", "nn", "seq")
    assert load_config("recipe", None, ["lgbm.seeds=[0, 1]"]).lgbm.seeds == (0, 1)  # numbers still parse as JSON


def test_runtime_settings_come_from_the_environment_and_key_nothing(monkeypatch):
    from labquake.models import run_name, train_key

    monkeypatch.setenv("LABQUAKE_FEATURE_CHUNK", "8")
    monkeypatch.setenv("LABQUAKE_SCHEDULER", "tcp://10.0.0.1:8786")
    cfg = load_config("fast")
    assert (cfg.runtime.feature_chunk, cfg.runtime.scheduler, cfg.runtime.scheduler_timeout) == (8, "tcp://10.0.0.1:8786", 20.0)
    assert load_config("fast", None, ["runtime.feature_chunk=3"]).runtime.feature_chunk == 3  # --set wins
    monkeypatch.delenv("LABQUAKE_FEATURE_CHUNK")
    monkeypatch.delenv("LABQUAKE_SCHEDULER")
    plain = load_config("fast")
    assert plain.runtime.feature_chunk == 64 and plain.runtime.scheduler is None
    assert train_key(cfg) == train_key(plain) and run_name(cfg) == run_name(plain) == "fast"  # how, not what
    monkeypatch.setenv("LABQUAKE_SCHEDULER_TIMEOUT", "soon")
    with pytest.raises(LabquakeError, match="LABQUAKE_SCHEDULER_TIMEOUT='soon': not a number"):
        load_config()
