"""Generator options from Python, YAML presets, key=value overrides and `generate --option`, recorded in provenance."""

import json

import pytest
import yaml

from synthsight.cli import main
from synthsight.config import ConfigError, load_config
from synthsight.family_spec import FamilySpec, families_label, join_split_options, parse_family_spec
from synthsight.generators import create_generator, generator_options
from synthsight.provenance import build_provenance
from synthsight.train.build import build_generators


def test_three_spellings_parse_to_the_same_spec():
    want = FamilySpec("fractal_ifs", "fractaldb", {"num_classes": 100, "points": 4000})
    assert parse_family_spec("fractal_ifs/fractaldb:num_classes=100,points=4000") == want
    assert parse_family_spec("fractal_ifs/fractaldb:num_classes=100:points=4000") == want
    assert parse_family_spec({"name": "fractal_ifs/fractaldb", "num_classes": 100, "points": 4000}) == want
    assert parse_family_spec(want.label) == want
    assert parse_family_spec("spectrum") == FamilySpec("spectrum", None, {})


def test_a_stream_of_strings_and_mappings_is_labelled_in_the_string_spelling():
    families = ["dead_leaves/mixed", {"name": "mix/mixup", "families": ["programs"], "k": 6}]
    assert families_label(families) == "dead_leaves/mixed, mix/mixup:families=[programs],k=6"
    assert families_label(families[:1], "+") == "dead_leaves/mixed"


def test_a_command_line_list_split_at_commas_is_joined_back():
    assert join_split_options(["a/b:k=1", "j=2", "c", "d:x=0.5"]) == ["a/b:k=1,j=2", "c", "d:x=0.5"]


@pytest.mark.parametrize("bad", ["fractal_ifs:num_classes", ":k=1", {"num_classes": 3}, 7])
def test_malformed_entries_name_the_fix(bad):
    with pytest.raises(ValueError, match="family"):
        parse_family_spec(bad)


def test_options_reach_the_generator_and_its_config():
    gen = create_generator("contours/rcdb:num_classes=7", size=32)
    assert gen.num_classes == 7 and gen.variant == "rcdb"
    assert gen.config()["options"] == {"num_classes": 7}
    assert int(gen.generate_with_labels(range(40), seed=0)[1].max()) < 7
    assert create_generator("contours", size=32).config().get("options") is None  # no options: config unchanged


def test_unknown_option_names_the_closest_valid_one():
    with pytest.raises(ValueError, match="did you mean 'num_classes'"):
        create_generator("contours/rcdb:num_clases=7", size=32)
    assert "num_classes" in generator_options("contours")


def test_options_from_overrides_and_yaml_presets(tmp_path):
    cfg = load_config("demo", ["data.families=contours/rcdb:num_classes=5,category_seed=3,dead_leaves"])
    assert cfg.data.families == ["contours/rcdb:num_classes=5,category_seed=3", "dead_leaves"]
    gens = build_generators(cfg)
    assert gens[0].num_classes == 5 and gens[0].config()["options"] == {"num_classes": 5, "category_seed": 3}
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"base": "demo", "data": {"families": [{"name": "contours/rcdb", "num_classes": 4}]}}))
    assert build_generators(load_config(str(preset)))[0].num_classes == 4
    with pytest.raises(ConfigError, match=r"data.families\[0\].*did you mean 'num_classes'"):
        build_generators(load_config("demo", ["data.families=contours:num_clases=5"]))


def test_provenance_records_the_options(tiny_config, tmp_path):
    cfg = tiny_config("data.families=contours/rcdb:num_classes=6")
    record = build_provenance(cfg, tmp_path, [], steps_done=0)
    assert record["data"]["generators"][0]["options"] == {"num_classes": 6}


def test_mix_children_take_their_own_options():
    mix = create_generator("mix", size=32, families=["contours/rcdb:num_classes=3", "dead_leaves"])
    assert mix.children[0].num_classes == 3 and mix.num_classes == 4


def test_generate_option_flag_writes_the_options_into_the_manifest(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["generate", "--family", "contours/rcdb", "--option", "num_classes=9", "--n", "3", "--size", "32",
                 "--out", str(out), "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["options"] == {"num_classes": 9}
    assert main(["generate", "--family", "contours", "--option", "num_clases=9", "--n", "1", "--size", "32"]) == 2
    assert "did you mean 'num_classes'" in capsys.readouterr().err
