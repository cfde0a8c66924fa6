import pytest

from ganforge.config import Config, ConfigError, load_config, load_yaml, merge, preset_names


def test_defaults_and_overrides():
    cfg = Config().with_overrides(["train.lr_g=1e-4", "batch_size=32", "model.name=mlp", "log.gif=false"])
    assert cfg.train.lr_g == 1e-4 and cfg.train.batch_size == 32
    assert cfg.model.name == "mlp" and cfg.log.gif is False


def test_unknown_key_names_the_key_and_suggests():
    with pytest.raises(ConfigError, match=r"train\.lr_gg.*did you mean train\.lr_g"):
        Config().with_overrides(["train.lr_gg=1"])
    with pytest.raises(ConfigError, match="'nosuchkey'"):
        Config().with_overrides(["nosuchkey=1"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.batch_size.*expects int.*'big'"):
        Config().with_overrides(["train.batch_size=big"])
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        Config().with_overrides(["train.batch_size=1.5"])
    with pytest.raises(ConfigError, match=r"log\.gif.*bool"):
        Config().with_overrides(["log.gif=maybe"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        Config().with_overrides(["lr_g"])


def test_yaml_sections_strict(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {lr_d: 0.001}\nmodle: {name: mlp}\n")
    with pytest.raises(ConfigError, match="modle"):
        load_config(p)
    p.write_text("train: {lr_d: 0.001}\n")
    assert load_config(p).train.lr_d == 0.001


def test_round_trip_dict():
    cfg = Config().with_overrides(["train.steps=7", "data.data_dir=/x"])
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", preset_names())
def test_presets_are_valid(name):
    cfg = load_config(name)
    from ganforge import models
    assert cfg.model.name in models.family_names()


def test_required_presets_exist():
    names = set(preset_names())
    for need in ("dcgan-fashion-mnist", "dcgan-mnist", "mlp-fashion-mnist", "mlp-mnist", "dcgan-emoji"):
        assert need in names
