"""`reliability contracts list` shows a broken contract on one line, control characters escaped (issue 9)."""

from __future__ import annotations

from reliability.cli import main


def test_a_broken_contract_with_control_characters_is_one_escaped_line(tmp_path, capsys):
    (tmp_path / "x.yml").write_text('dataset: warehouse/main/raw_x\ncolumns: [\n  - name: "\x1b[31mred"\n')
    assert main(["contracts", "list", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\x1b" not in out
    assert out.startswith(f"{tmp_path / 'x.yml'}: BROKEN -> raw_x.") and "\\x0a" in out
