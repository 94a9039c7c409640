"""The README's set-up commands are the ones CI runs, and they stay two."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "torchddsp " in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert _readme_commands()[1] in ci_script


def test_readme_library_example_runs():
    text = (ROOT / "README.md").read_text()
    example = re.search(r"## The library in ten lines\n\n```python\n(.+?)\n```", text, re.S)[1]
    assert len(example.splitlines()) <= 12
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["audio"].shape == (1, 16000)
    assert namespace["audio_48k"].shape == (1, 48000)
    reverb_ir = namespace["synth"].processors["reverb"].ir
    assert reverb_ir.grad is not None and reverb_ir.grad.abs().sum() > 0
