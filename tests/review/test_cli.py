"""Bad input to the review commands and to the duplicate-resend fault mode: one line, exit 2."""

from __future__ import annotations

import pytest

from reliability.cli import main
from reliability.kafka.producer import with_resends


def test_resend_every_sends_every_nth_message_twice_in_a_row():
    pairs = [(str(i).encode(), b"v%d" % i) for i in range(1, 7)]
    keys = [k for k, _ in with_resends(pairs, 3)]
    assert keys == [b"1", b"2", b"3", b"3", b"4", b"5", b"6", b"6"]
    assert list(with_resends(pairs, 0)) == pairs


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["kafka", "produce", "--resend-every", "-1"], "'-1'"),
        (["metrics", "serve", "--port", "70000"], "'70000'"),
        (["incidents", "stats", "--since", "yesterday"], "'yesterday'"),
        (["postmortem", "1", "--format", "pdf"], "'pdf'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_value(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert named in err, err


def test_unknown_incident_and_bad_notes_file_are_one_line_errors(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    from reliability.incidents.store import IncidentStore
    from tests.review.helpers import open_incident

    with IncidentStore(url) as store:
        open_incident(store)
    assert main(["postmortem", "INC-9", "--store-url", url, "--no-lineage", "--no-kafka"]) == 1
    assert capsys.readouterr().err.strip() == "error: no incident INC-9"
    notes = tmp_path / "notes.yaml"
    notes.write_text("action_items: {id: A1}\n")
    argv = ["postmortem", "1", "--store-url", url, "--no-lineage", "--no-kafka", "--notes", str(notes)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {notes}: action_items must be a list of mappings (id, text, owner, status)"
