"""The numeric options label-queue and replay share (``nutrilearn.cli.arguments``): bad
values are usage errors that name the option, good ones parse to numbers."""

from __future__ import annotations

import pytest

from nutrilearn.cli import build_parser


@pytest.mark.parametrize("argv, message", [
    (["label-queue", "--n", "0"], "argument --n: must be at least 1"),
    (["label-queue", "--reference-days", "-1"], "argument --reference-days: must not be negative"),
    (["label-queue", "--reference-days", "nan"], "argument --reference-days: must not be negative"),
    (["replay", "--photos", ".", "--n", "5", "--feedback-share", "1.5"],
     "argument --feedback-share: must be between 0 and 1"),
    (["replay", "--photos", ".", "--n", "5", "--days", "0"], "argument --days: must be positive"),
    (["replay", "--photos", ".", "--n", "five"], "argument --n: invalid int value: 'five'"),
])
def test_bad_numbers_are_usage_errors_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_good_numbers_parse():
    queue = build_parser().parse_args(["label-queue", "--n", "3", "--reference-days", "0"])
    assert (queue.n, queue.reference_days) == (3, 0.0)
    replay = build_parser().parse_args(["replay", "--photos", ".", "--n", "1", "--days", "0.5",
                                        "--feedback-share", "1", "--users", "2"])
    assert (replay.n, replay.days, replay.feedback_share, replay.users) == (1, 0.5, 1.0, 2)
