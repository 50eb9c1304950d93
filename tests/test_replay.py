"""Replay frames: with $FTLIB_REPLAY_FRAMES set, a replay slider stores its output at every value in its cell."""

import sys

import numpy as np
import pytest

from ftlib.course import replay
from ftlib.course.widgets import slider


def test_a_recording_slider_stores_every_value_in_order(monkeypatch, capsys):
    monkeypatch.setenv(replay.RECORD_FRAMES, "1")
    monkeypatch.setenv("FTLIB_HEADLESS", "1")

    def show(k):
        print(f"k = {k}")
        print("second line", file=sys.stderr)

    assert replay.recording()
    slider(show, "k", [1, 2, 3], 2, "the k")
    out = capsys.readouterr().out
    assert "[replay frames: 3 values of k" in out  # outside IPython the bundle prints as text
    assert "[slider] the k: k = 2" in out and out.endswith("k = 2\n")  # the headless stand-in still draws once
    payload = replay.record_frames(show, "k", [1, 2, 3], 2, "the k")
    assert payload["labels"] == ["1", "2", "3"] and payload["start"] == 1 and payload["description"] == "the k"
    assert payload["frames"] == [[{"output_type": "stream", "name": "stdout", "text": f"k = {k}\n"},
                                  {"output_type": "stream", "name": "stderr", "text": "second line\n"}]
                                 for k in (1, 2, 3)]
    assert replay.find_frames([{"output_type": "display_data", "data": {replay.MIME: payload}}]) == payload
    assert replay.find_frames([{"output_type": "stream", "text": "x"}]) is None


def test_recording_keeps_the_random_state():
    np.random.seed(0)
    replay.record_frames(lambda k: print(np.random.rand()), "k", [1, 2], 1, "k")
    after = np.random.rand()
    np.random.seed(0)
    assert after == np.random.rand()


@pytest.mark.parametrize("value", ["", "0"])
def test_recording_is_off_unless_asked(monkeypatch, value):
    monkeypatch.setenv(replay.RECORD_FRAMES, value)
    assert not replay.recording()
