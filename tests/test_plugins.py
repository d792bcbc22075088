"""Names registered by other installed packages (entry-point group `synthsight.plugins`) reach the CLI and verify."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import TINY

PLUGIN = '''
import torch
from synthsight.generators.base import Generator
from synthsight.registry import GENERATORS


@GENERATORS.register("plugin_checker")
class Checker(Generator):
    family = "plugin_checker"
    variants = ("default",)

    def sample_params(self, rng):
        return {"phase": torch.randint(0, 2, (), generator=rng)}

    def render(self, params, device):
        yy, xx = torch.meshgrid(torch.arange(self.size), torch.arange(self.size), indexing="ij")
        board = ((yy // 4 + xx // 4) % 2).float().to(device)
        out = torch.stack([board if int(p["phase"]) == 0 else 1 - board for p in params])
        return out.unsqueeze(1).expand(-1, 3, -1, -1).clone()
'''


def _install(site: Path, module: str, body: str, value: str) -> None:
    """A minimal installed distribution: a module and a dist-info folder declaring the entry point."""
    (site / f"{module}.py").write_text(body)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[synthsight.plugins]\n{module} = {value}\n")


def _run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "synthsight", *args], capture_output=True, text=True, env=env,
                          cwd=cwd)


def test_a_plugin_generator_is_seen_by_generate_pretrain_and_verify(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "checker_plugin", textwrap.dedent(PLUGIN), "checker_plugin")
    grid = tmp_path / "grid.png"
    done = _run(site, "generate", "--family", "plugin_checker", "--n", "4", "--size", "16", "--preview", str(grid),
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert grid.is_file()
    run = tmp_path / "run"
    done = _run(site, "pretrain", *TINY, "data.families=plugin_checker", "--out", str(run), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _run(site, "verify", str(run / "provenance.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plugin_checker" in done.stdout
    missing = _run(tmp_path / "nowhere", "verify", str(run / "provenance.json"), cwd=tmp_path)
    assert missing.returncode != 0  # without the plugin installed the run cannot be re-checked


def test_a_broken_plugin_is_named_in_a_clear_error(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "broken_plugin", "raise ImportError('needs libfoo')\n", "broken_plugin")
    done = _run(site, "generate", "--family", "dead_leaves", "--n", "1", "--size", "16", "--preview",
                str(tmp_path / "g.png"), cwd=tmp_path)
    assert done.returncode == 2
    assert "plugin 'broken_plugin'" in done.stderr and "needs libfoo" in done.stderr and "Traceback" not in done.stderr


def test_a_function_entry_point_is_called_once(tmp_path, monkeypatch):
    import synthsight.plugins as plugins

    site = tmp_path / "site"
    site.mkdir()
    _install(site, "fn_plugin", "CALLS = []\ndef register():\n    CALLS.append(1)\n", "fn_plugin:register")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(plugins._state, "loaded", False)
    assert "fn_plugin" in plugins.load_plugins()
    assert plugins.load_plugins() == []
    import fn_plugin

    assert fn_plugin.CALLS == [1]
