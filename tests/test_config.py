import pytest

from synthsight.config import CONFIG_DIR, ConfigError, apply_overrides, config_from_dict, load_config
from synthsight.registry import METHODS
from synthsight.train.build import build_method


def test_demo_preset_loads_with_overrides():
    cfg = load_config("demo", ["trainer.steps=7", "method=simclr", "data.families=[spectrum]", "views.size=16"])
    assert cfg.trainer.steps == 7
    assert cfg.method["name"] == "simclr"
    assert cfg.data.families == ["spectrum"]
    assert cfg.views.size == 16


def test_typo_in_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer.setps'.*Did you mean 'steps'"):
        load_config("demo", ["trainer.setps=10"])


def test_typo_in_section_is_reported():
    with pytest.raises(ConfigError, match=r"'trainr'.*Did you mean 'trainer'"):
        config_from_dict({"trainr": {"steps": 1}})


def test_wrong_type_names_the_expected_type():
    with pytest.raises(ConfigError, match=r"trainer.steps = 'many': expected an integer"):
        load_config("demo", ["trainer.steps=many"])
    with pytest.raises(ConfigError, match="expected true or false"):
        load_config("demo", ["trainer.channels_last=3"])


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match=r"unknown preset 'dmeo'.*Did you mean 'demo'"):
        load_config("dmeo")


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["trainer.steps"])


def test_unknown_method_option_names_valid_ones():
    cfg = load_config("demo", ["method.temprature=0.5"])
    with pytest.raises(ConfigError, match=r"method.temprature.*Did you mean 'temperature'"):
        build_method(cfg)


def test_unknown_method_lists_methods():
    cfg = load_config("demo", ["method=simclrr"])
    with pytest.raises(ValueError, match=r"unknown method 'simclrr'; did you mean 'simclr'"):
        build_method(cfg)


def test_choosing_another_method_drops_the_presets_method_options():
    assert load_config("demo", ["method=byol"]).method == {"name": "byol"}
    assert load_config("demo", ["method.name=moco_v2", "method.temperature=0.3"]).method == {
        "name": "moco_v2", "temperature": 0.3}
    assert load_config("demo", ["method=supcon"]).method["temperature"] == 0.1  # same method: options stay
    assert load_config("simclr_cpu", ["method=simclr"]).method["temperature"] == 0.1


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
                         + sorted(f"recipes/{p.stem}" for p in (CONFIG_DIR / "recipes").glob("*.yaml")))
def test_every_preset_loads_and_builds_its_method(preset):  # recipes/: the frozen bases of study files
    cfg = load_config(preset)
    method = build_method(cfg)
    assert METHODS.get(cfg.method["name"]) is type(method)


def test_presets_inherit_with_base(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: demo\nmethod:\n  name: byol\ntrainer:\n  steps: 7\n")
    cfg = load_config(str(child))
    assert cfg.trainer.steps == 7 and cfg.trainer.batch_size == load_config("demo").trainer.batch_size
    assert cfg.method == {"name": "byol"}  # the demo's SimCLR temperature does not carry over
    assert load_config("moco_v2_gpu").model.backbone == "resnet18"  # gpu.yaml -> simclr_cpu.yaml
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(str(loop))


def test_a_list_of_bases_stacks_them_in_order(tmp_path):
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("base: demo\ntrainer:\n  steps: 7\n  lr: 0.5\n")
    second.write_text("trainer:\n  lr: 0.25\nmethod:\n  temperature: 0.3\n")  # a fragment: no method name
    child = tmp_path / "child.yaml"
    child.write_text(f"base: [{first}, {second}]\ntrainer:\n  batch_size: 8\n")
    cfg = load_config(str(child))
    assert (cfg.trainer.steps, cfg.trainer.lr, cfg.trainer.batch_size) == (7, 0.25, 8)  # later bases win
    assert cfg.method == {**load_config("demo").method, "temperature": 0.3}
    gpu, cpu = load_config("data2vec_multicrop_gpu"), load_config("data2vec_multicrop_cpu")
    assert gpu.method["local_crops"] == cpu.method["local_crops"] == 4  # the shared fragment parts/cls_multicrop
    assert gpu.trainer.batch_size == load_config("data2vec_gpu").trainer.batch_size != cpu.trainer.batch_size
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [demo, 3]\n")
    with pytest.raises(ConfigError, match="base must be a preset name or a list"):
        load_config(str(bad))


def test_malformed_yaml_names_the_file_or_override_and_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  steps: 3\n  lr: [0.1, 0.2\nmodel:\n  width: 8\n")
    with pytest.raises(ConfigError, match=rf"config file {bad} is not valid YAML at line \d+, column \d+"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match=r"override 'data.families=\[spectrum' is not valid YAML at line 1"):
        load_config("demo", ["data.families=[spectrum"])


def test_plain_scientific_notation_is_a_number(tmp_path):
    cfg = load_config("demo", ["trainer.lr=1e-3", "trainer.min_lr=5E-6", "method.temperature=2e-1"])
    assert cfg.trainer.lr == 0.001 and cfg.trainer.min_lr == 5e-6 and cfg.method["temperature"] == 0.2
    preset = tmp_path / "p.yaml"
    preset.write_text("base: demo\ntrainer:\n  lr: 3e-4\n  weight_decay: 1.5e-2\n")
    assert load_config(str(preset)).trainer.lr == 3e-4


@pytest.mark.parametrize("override, message", [
    ("trainer.lr=.inf", "trainer.lr = inf: expected a finite number"),
    ("trainer.grad_clip=.nan", "trainer.grad_clip = nan: expected a finite number"),
    ("views.size=100000", "views.size = 100000: must be in [1,4096]"),
    ("data.render_size=9999", "data.render_size = 9999: must be in [8,4096]"),
    ("trainer.device=tpu", "trainer.device = 'tpu': must be one of auto, cpu, cuda, cuda:N"),
    ("trainer.min_lr=1.0", "trainer.min_lr = 1.0 is above trainer.lr = "),  # a range given by its two ends
])
def test_non_finite_numbers_huge_images_and_unknown_devices_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config("demo", [override])
    assert message in str(info.value)


def test_range_checks_refuse_non_finite_method_options():
    from synthsight.config import check_ranges

    class Options:
        temperature = float("inf")

    with pytest.raises(ConfigError, match=r"method.temperature = inf: must be a finite number > 0"):
        check_ranges(Options(), "method", temperature=">0")
    assert load_config("demo", ["trainer.device=cuda:1"]).trainer.device == "cuda:1"
