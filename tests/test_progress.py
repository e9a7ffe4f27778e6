"""vaelab.progress: a long step says how far it is, a short one says nothing, --quiet silences both."""
import logging

import pytest

from vaelab.progress import Progress, is_quiet, set_quiet, track


@pytest.fixture
def lines(caplog):
    set_quiet(False)  # whatever a command run earlier in this process left
    caplog.set_level(logging.INFO, logger="vaelab")
    yield lambda: [r.getMessage() for r in caplog.records if r.name == "vaelab"]
    set_quiet(False)


def test_a_line_per_interval_with_the_count_and_a_closing_line(lines):
    with Progress("fitting the gmm sampler", total=4, unit="steps", every=0.0) as p:
        for _ in range(4):
            p.update()
    got = lines()
    assert got[:4] == [f"fitting the gmm sampler: {i}/4 steps ({25 * i}%), 0 s" for i in range(1, 5)]
    assert got[4].startswith("fitting the gmm sampler: done, 4/4 steps (100%) in ")
    assert len(got) == 5


def test_a_step_shorter_than_the_interval_prints_nothing(lines):
    assert list(track(range(50), "scoring", every=3600.0)) == list(range(50))
    assert lines() == []


def test_quiet_silences_every_line(lines):
    set_quiet(True)
    assert is_quiet()
    assert list(track(range(3), "scoring", every=0.0)) == [0, 1, 2]
    assert lines() == []


def test_cli_quiet_holds_for_its_command_only(capsys, monkeypatch):
    import vaelab.cli.commands as commands
    from vaelab.cli import main

    seen = []
    real = commands.cmd_models
    monkeypatch.setattr(commands, "cmd_models", lambda args: seen.append(is_quiet()) or real(args))
    set_quiet(False)
    assert main(["models", "--quiet"]) == 0 and main(["models"]) == 0
    assert seen == [True, False] and not is_quiet()  # quiet while its command ran, and not after
