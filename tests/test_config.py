import dataclasses
import re
import typing

import pytest
import yaml

from ganforge.core.config import (
    DEFAULT_TASK,
    REGISTRY_KINDS,
    Config,
    ConfigError,
    all_keys,
    check_names,
    check_values,
    help_config,
    key_spec,
    load_config,
    merge,
    preset_names,
    schema,
    set_key,
)
from ganforge.training.tasks import registered_names, resolve_config


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


# ---------------------------------------------------------------------- the schema: checked values

SPECS = list(schema())
CHOICE_KEYS = [s for s in SPECS if s.choices is not None]
LOW_KEYS = [s for s in SPECS if s.low is not None]
HIGH_KEYS = [s for s in SPECS if s.high is not None]
ZERO_KEYS = [s for s in SPECS if s.zero]
REGISTRY_KEYS = [s for s in SPECS if s.registry]
ids = lambda specs: [s.name for s in specs]  # noqa: E731


def _fails(key, value, *, where="override"):
    with pytest.raises(ConfigError) as e:
        Config().with_overrides({key: value}, where=where)
    msg = str(e.value)
    assert "\n" not in msg and key in msg and msg.startswith(f"{where}: "), msg
    return msg


def test_schema_covers_every_key_and_is_consistent():
    assert [s.name for s in SPECS] == all_keys()
    for s in SPECS:
        assert s.help.strip() and "\n" not in s.help, s.name
        assert s.default == (getattr(getattr(Config(), s.section), s.field) if s.section
                             else getattr(Config(), s.field))
        if s.base_type in (int, float) and s.choices is None:
            assert s.low is not None, f"{s.name}: every numeric key has a range"
        else:
            assert s.low is None and s.high is None, s.name
        if s.zero:
            assert s.base_type in (int, float), s.name
        if s.registry:
            assert s.registry in REGISTRY_KINDS and s.base_type is str, s.name
    check_values(Config())      # the defaults are valid


def test_brief_examples_of_messages():
    assert _fails("train.lr_decay", "linaer") == \
        "override: train.lr_decay='linaer' is not one of none, linear, cosine (did you mean linear?)"
    assert _fails("log.sample_every", "-1", where="config") == \
        "config: log.sample_every=-1 must be >= 0 (0: off, grids only at the start and the end)"


@pytest.mark.parametrize("spec", CHOICE_KEYS, ids=ids(CHOICE_KEYS))
def test_choice_keys_reject_a_typo_listing_the_choices(spec):
    if spec.base_type is str:
        bad = next(c for c in spec.choices if "N" not in c) + "x"
    else:
        bad = max(spec.choices) + 1
    msg = _fails(spec.name, bad)
    assert "is not one of " + ", ".join(map(str, spec.choices)) in msg
    for c in spec.choices:
        if spec.pattern is None or "N" not in str(c):
            assert set_key(Config(), spec.name, c) is not None
            cfg = set_key(Config(), spec.name, str(c))
            sec = getattr(cfg, spec.section)
            assert getattr(sec, spec.field) == c


def test_typed_choices():
    assert key_spec("train.lr_decay").choices == ("none", "linear", "cosine")
    assert key_spec("data.channels").choices == (0, 1, 3)
    assert typing.get_origin(key_spec("cond.method").type) is typing.Literal
    cfg = Config().with_overrides(["train.amp=BF16", "data.channels=3", "cond.method=ACGAN"])
    assert cfg.train.amp == "bf16" and cfg.data.channels == 3 and cfg.cond.method == "acgan"
    with pytest.raises(ConfigError, match=r"data\.channels.*expects int"):
        Config().with_overrides(["data.channels=rgb"])


def test_device_pattern():
    for ok in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        assert Config().with_overrides({"train.device": ok}).train.device == ok
    for bad in ("gpu", "cuda:", "cuda:x", "cuda0", "CPU:1", "tpu"):
        assert "auto, cpu, cuda, cuda:N, mps" in _fails("train.device", bad)


def test_yaml_booleans_for_compile(tmp_path):
    p = tmp_path / "c.yaml"
    for text, want in (("false", "false"), ("true", "true"), ("no", "false"), ("auto", "auto")):
        p.write_text(f"train: {{compile: {text}}}\n")
        assert load_config(p).train.compile == want
    p.write_text("train: {compile: maybe}\n")
    with pytest.raises(ConfigError, match=r"^--config .*: train\.compile='maybe' is not one of auto, true, false$"):
        load_config(p)


def _below(spec):
    """The largest value just outside the lower bound."""
    if spec.low_open:
        return spec.low
    return spec.low - 1 if spec.base_type is int else spec.low - 1e-6


@pytest.mark.parametrize("spec", LOW_KEYS, ids=ids(LOW_KEYS))
def test_numeric_keys_reject_values_below_their_range(spec):
    for bad in (_below(spec), -1, -1000):
        msg = _fails(spec.name, bad)
        assert "must be " + spec.range_text() in msg
        if spec.zero:
            assert msg.endswith(f"(0: {spec.zero})")
    msg = _fails(spec.name, str(_below(spec)))        # the CLI's string form too
    with pytest.raises(ConfigError, match=re.escape(spec.name)):
        Config.from_dict({spec.section: {spec.field: _below(spec)}})
    # the bound itself (closed) or just above it (open) is accepted
    ok = spec.low if not spec.low_open else spec.low + (1 if spec.base_type is int else 1e-6)
    assert set_key(Config(), spec.name, ok) is not None


@pytest.mark.parametrize("spec", HIGH_KEYS, ids=ids(HIGH_KEYS))
def test_numeric_keys_reject_values_above_their_range(spec):
    step = 1 if spec.base_type is int else 1e-6
    above = spec.high if spec.high_open else spec.high + step
    assert "must be " + spec.range_text() in _fails(spec.name, above)
    assert "must be" in _fails(spec.name, max(1000, 2 * spec.high))
    if not spec.high_open:
        assert set_key(Config(), spec.name, spec.high) is not None


@pytest.mark.parametrize("spec", [s for s in SPECS if s.base_type is float], ids=ids([s for s in SPECS if s.base_type is float]))
def test_float_keys_reject_non_finite(spec):
    for bad in ("nan", "inf"):
        assert "must be a finite number" in _fails(spec.name, bad)


@pytest.mark.parametrize("spec", ZERO_KEYS, ids=ids(ZERO_KEYS))
def test_zero_means_something_and_is_accepted(spec):
    cfg = Config().with_overrides({spec.name: 0})
    assert getattr(getattr(cfg, spec.section), spec.field) == 0
    line = next(l for l in help_config().splitlines() if l.startswith(spec.name + " = "))
    assert f"0: {spec.zero}" in line


def test_from_dict_and_merge_check_values():
    with pytest.raises(ConfigError, match=r"^config: log\.sample_every=-1 must be >= 0"):
        Config.from_dict({"log": {"sample_every": -1}})
    with pytest.raises(ConfigError, match=r"^x: train\.lr_decay='cos' is not one of"):
        merge(Config(), {"train": {"lr_decay": "cos"}}, where="x")
    with pytest.raises(ConfigError, match=r"reg\.d_dropout=1\.0 must be in \[0, 1\)"):
        check_values(dataclasses.replace(Config(), reg=dataclasses.replace(Config().reg, d_dropout=1.0)))


def test_dump_yaml_shape_unchanged_and_round_trips():
    d = Config().to_dict()
    # a task's section follows the others (pix2pix: 0.3); older configs without it still load
    assert list(d) == ["data", "model", "train", "log", "eval", "cyclegan", "cond", "pix2pix",
                       "reg", "aug", "ema", "guard", "distill", "out", "description"]
    flat = [f"{s}.{k}" for s, v in d.items() if isinstance(v, dict) for k in v] + \
        [k for k, v in d.items() if not isinstance(v, dict)]
    assert flat == all_keys()
    assert d["train"]["lr_decay"] == "none" and d["data"]["channels"] == 0 and d["eval"]["metrics"] == ""
    cfg = Config().with_overrides(["train.compile=false", "data.channels=3", "train.device=cuda:1",
                                   "log.sample_every=0", "aug.diffaug=translation,color"])
    assert Config.from_dict(yaml.safe_load(cfg.dump_yaml())) == cfg


@pytest.mark.parametrize("name", preset_names())
def test_presets_load_with_valid_values_and_names(name):
    cfg = load_config(name)
    check_values(cfg)
    check_names(resolve_config(cfg), registered_names())


def test_defaults_name_registered_entries():
    cfg = resolve_config(Config())
    assert cfg.train.task == DEFAULT_TASK
    check_names(cfg, registered_names())


def test_registered_names_cover_every_registry_kind():
    assert set(registered_names()) == set(REGISTRY_KINDS)


FAKE_KNOWN = {kind: [f"{kind}-one", f"{kind}-two"] for kind in REGISTRY_KINDS}


def _all_valid():
    cfg = Config()
    for s in REGISTRY_KEYS:
        cfg = set_key(cfg, s.name, f"{s.registry}-one")
    check_names(cfg, FAKE_KNOWN)
    return cfg


@pytest.mark.parametrize("spec", REGISTRY_KEYS, ids=ids(REGISTRY_KEYS))
def test_check_names_rejects_a_typo_in_every_registry_key(spec):
    base = _all_valid()
    typo = f"{spec.registry}-onne"
    bad = f"{spec.registry}-two,{typo}" if spec.many else typo
    with pytest.raises(ConfigError) as e:
        check_names(set_key(base, spec.name, bad), FAKE_KNOWN)
    msg = str(e.value)
    assert "\n" not in msg and spec.name in msg and repr(bad) in msg
    assert ", ".join(FAKE_KNOWN[spec.registry]) in msg
    assert msg.endswith(f"(did you mean {spec.registry}-one?)")
    # a kind the caller does not know is skipped
    check_names(set_key(base, spec.name, bad), {k: v for k, v in FAKE_KNOWN.items() if k != spec.registry})
    # valid names pass
    check_names(set_key(base, spec.name, f"{spec.registry}-two"), FAKE_KNOWN)
    if spec.many:
        check_names(set_key(base, spec.name, ""), FAKE_KNOWN)
        check_names(set_key(base, spec.name, f" {spec.registry.upper()}-ONE , {spec.registry}-two"),
                    FAKE_KNOWN)
        none = set_key(base, spec.name, "none")
        if spec.none_off:
            check_names(none, FAKE_KNOWN)
        else:
            with pytest.raises(ConfigError, match=re.escape(spec.name)):
                check_names(none, FAKE_KNOWN)
    else:
        with pytest.raises(ConfigError, match=re.escape(spec.name)):
            check_names(set_key(base, spec.name, ""), FAKE_KNOWN)


def test_check_names_skips_everything_without_known():
    check_names(Config().with_overrides(["model.name=nosuch", "eval.metrics=nosuch"]), {})


def test_help_config_has_one_line_per_key():
    text = help_config()
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert [l.split(" = ", 1)[0] for l in lines] == all_keys()
    for spec, line in zip(SPECS, lines):
        assert f"# {spec.help}" in line
        for c in spec.choices or ():
            assert str(c) in line
        if spec.range_text():
            assert spec.range_text() in line
    headers = [l for l in text.splitlines() if l.startswith("# ")]
    assert any("Regularisers of D" in h for h in headers)   # section docstrings are kept
    assert len(headers) == len({s.section for s in SPECS})
