import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import two_class_npz

from synthsight.cli import build_parser, main

COMMANDS = ["generate", "pretrain", "eval", "finetune", "report", "demo", "stats"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: synthsight " + command in capsys.readouterr().out


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "synthsight", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in out.stdout


def test_generate_preview_writes_a_png(tmp_path):
    path = tmp_path / "grid.png"
    assert main(["generate", "--family", "dead_leaves", "--variant", "mixed", "--n", "4", "--size", "32",
                 "--preview", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_generator_is_a_clear_error(capsys):
    assert main(["generate", "--family", "dead_leafs", "--n", "2", "--size", "32", "--preview", "x.png"]) == 2
    err = capsys.readouterr().err
    assert "unknown generator 'dead_leafs'" in err and "did you mean 'dead_leaves'" in err


def test_config_typo_is_a_clear_error(tmp_path, capsys):
    assert main(["pretrain", "trainer.stpes=3", "--out", str(tmp_path / "run")]) == 2
    assert "Did you mean 'steps'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _npz(path, n=40, size=12, seed=0):
    return two_class_npz(path, n, size, seed)


def test_pretrain_then_eval_on_npz_writes_metrics_and_report(tiny_config, tmp_path, capsys):
    from tests.conftest import TINY

    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "--out", str(run)]) == 0
    train, test = _npz(tmp_path / "train.npz"), _npz(tmp_path / "test.npz", seed=1)
    assert main(["eval", str(run), "--data", str(train), "--test-data", str(test), "--k", "5",
                 "--compare", "random,pixels", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| random init (same architecture) |" in out and "| synthsight pretrained (synthetic only) |" in out
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    names = [e["name"] for e in metrics["encoders"]]
    assert names == ["random init (same architecture)", "raw pixels", "synthsight pretrained (synthetic only)"]
    assert metrics["encoders"][1]["results"]["linear"]["top1"] > 0.9  # the bright half is linearly separable
    html = (run / "report.html").read_text()
    assert "k-NN, cosine similarity, k=5" in html and "data:image/png;base64," in html
    for name in ("samples.png", "views.png", "loss.png", "eval/accuracy.png", "eval/metrics.csv"):
        assert (run / name).stat().st_size > 0
    assert {"kmeans", "fewshot"} <= set(metrics["encoders"][0]["results"])  # the default protocols
    assert "k-means NMI" in out and "5-shot top-1" in out and "k-NN k=40 top-1" in out  # k=200: 40 images
    metric_rows = (run / "eval" / "metrics.csv").read_text().splitlines()
    assert metric_rows[0] == "encoder,protocol,metric,value,description"
    assert any(",kmeans,ari," in r for r in metric_rows)
    per_class = (run / "eval" / "per_class.csv").read_text().splitlines()
    assert per_class[0].startswith("encoder,protocol,class_index,class,top1,baseline,baseline_top1,diff")
    assert len(per_class) == 1 + 3 * 4 * 2  # encoders x protocols x classes


def test_finetune_command_and_protocol(tiny_config, tmp_path, capsys):
    from tests.conftest import TINY

    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "--out", str(run)]) == 0
    train, test = _npz(tmp_path / "train.npz"), _npz(tmp_path / "test.npz", seed=1)
    assert main(["finetune", str(run), "--data", str(train), "--test-data", str(test), "--epochs", "2",
                 "--batch-size", "16", "--device", "cpu"]) == 0
    assert "full fine-tuning of backbone + linear head, AdamW" in capsys.readouterr().out
    record = json.loads((run / "finetune" / "metrics.json").read_text())
    assert len(record["history"]) == 2 and 0.0 <= record["result"]["top1"] <= 1.0
    assert (run / "finetune" / "history.csv").is_file() and (run / "finetune" / "per_class.csv").is_file()
    assert main(["eval", str(run), "--data", str(train), "--test-data", str(test), "--protocols", "knn,finetune",
                 "--finetune-epochs", "1", "--compare", "pixels", "--device", "cpu", "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "fine-tune top-1" in out and "| raw pixels |" in out and "| – |" in out  # pixels: nothing to fine-tune


def test_eval_missing_data_path_is_a_clear_error(tiny_config, tmp_path, capsys):
    from tests.conftest import TINY

    run = tmp_path / "run"
    main(["pretrain", *TINY, "--out", str(run)])
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(tmp_path / "missing_dir"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "missing_dir" in err and "no such file or directory" in err


def test_parser_lists_all_commands():
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text


ALL_COMMANDS = COMMANDS + ["distill", "export", "verify"]


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_option_with_a_default_shows_it_in_help(command, capsys):
    from synthsight.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction)).choices[command]
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in sub._actions:
        if not action.option_strings or action.default is None or action.default is False or action.dest == "help":
            continue
        assert "default" in (action.help or "").lower() or f"(default: {action.default})" in text, action.dest


def test_print_config_prints_every_key_with_overrides_and_writes_nothing(tmp_path, capsys):
    import yaml

    assert main(["pretrain", "trainer.steps=7", "--print-config", "--out", str(tmp_path / "run")]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["steps"] == 7 and "collapse_patience" in printed["trainer"]
    assert not (tmp_path / "run").exists()
    assert main(["demo", "--print-config", "--seed", "3"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["seed"] == 3
