import ipywidgets
import pytest

from ftlib.widgets import slider


def test_slider_makes_one_control_and_calls_show_with_the_chosen_value():
    seen = []

    def show(patience, min_delta=0.5):
        seen.append((patience, min_delta))

    widget = slider(show, "patience", [1, 2, 5], 5, "patience (evaluations without a new best)")
    controls = [c for c in widget.children if isinstance(c, ipywidgets.ValueWidget)]
    assert len(controls) == 1 and controls[0].description.startswith("patience")
    controls[0].value = 2
    assert seen[-1] == (2, 0.5)


@pytest.mark.parametrize("value, description, message", [(3, "labels (N)", "start value 3"),
                                                          (1, "  ", "description")])
def test_bad_slider_settings_are_clear_errors(value, description, message):
    with pytest.raises(ValueError, match=message):
        slider(lambda n: None, "n", [1, 2], value, description)
