"""`dalkit compare --datasets a,b` and `--grid FILE`: a grid over several data sets, one table per data set, and
`dalkit report` on it."""

from __future__ import annotations

import json

import pytest

from dalkit.cli import main


def test_a_grid_file_runs_every_data_set_and_the_command_line_wins(shapes, tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f'datasets = ["digits", "folder:{shapes}"]\nstrategies = ["random", "margin"]\nseeds = [0]\n'
        'epochs = 1\ninitial = 4\nbudget = 2\ncycles = 3\nno-progress = true\ndevice = "cpu"\n'
        '[strategy-option]\n"margin.sampling" = "topk"\n'
    )
    out = tmp_path / "grid"
    assert main(["compare", "--grid", str(grid), "--cycles", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "digits:" in printed and "folder-shapes:" in printed  # one table per data set
    for strategy in ("random", "margin"):
        runs = sorted(p.name for p in (out / strategy).iterdir())
        assert runs == [f"digits-{strategy}-seed0", f"folder-shapes-{strategy}-seed0"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"digits", "folder-shapes"}
    assert all(set(s) == {"random", "margin"} for s in summary.values())
    assert all(e["labelled"] == [4, 6] for s in summary.values() for e in s.values())  # --cycles 2 won over 3
    assert (out / "curves-digits.png").is_file() and (out / "curves-folder-shapes.png").is_file()
    config = json.loads((out / "margin" / "digits-margin-seed0" / "config.json").read_text())["experiment"]
    assert config["strategy_options"] == {"sampling": "topk"}

    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "report.md").read_text()
    assert "random (digits, small-cnn)" in table and f"margin (folder:{shapes}, small-cnn)" in table


def test_datasets_on_the_command_line_name_each_run_after_its_data_set(shapes, tmp_path):
    args = ["--epochs", "1", "--initial", "4", "--budget", "2", "--cycles", "1", "--no-progress", "--device", "cpu"]
    out = tmp_path / "cmd"
    assert main(["compare", *args, "--datasets", f"digits,folder:{shapes}", "--strategies", "random", "--seeds", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    assert sorted(p.name for p in (out / "random").iterdir()) == ["digits-random-seed3", "folder-shapes-random-seed3"]
    assert "folder-shapes:" in (out / "summary.md").read_text()


@pytest.mark.parametrize(
    "text, words",
    [
        ("epoch = 2\n", "'epoch' is not an option of dalkit compare"),
        ("datasets = [\n", "is not valid TOML"),
        ("epochs = { a = 1 }\n", "'epochs' takes one value or a list, not a table"),
        ("grid = 'other.toml'\n", "'grid' is not an option"),
    ],
)
def test_a_bad_grid_file_is_one_sentence(text, words, tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    assert main(["compare", "--grid", str(grid), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_a_missing_grid_file_and_dataset_with_datasets_are_one_sentence(tmp_path, capsys):
    assert main(["compare", "--grid", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["compare", "--dataset", "digits", "--datasets", "digits,mnist", "--out", str(tmp_path / "y")]) == 2
    assert "not both" in capsys.readouterr().err
