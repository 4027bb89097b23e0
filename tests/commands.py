"""The command line as the tests call it: ``python -m benchmark ARGS`` in this process."""

from __future__ import annotations

from benchmark.cli import main


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``python -m benchmark ARGS`` (argparse's exits included)."""
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single ``error: ...`` line of ``err`` (the last line), with no traceback anywhere."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]
