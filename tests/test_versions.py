"""ftlib.course.versions: the pins in .ci/constraints.txt and the one-line warning when torch & co. differ from them."""

from ftlib.course import versions


def _constraints(tmp_path, text):
    path = tmp_path / "constraints.txt"
    path.write_text(text)
    return path


def test_the_shipped_constraints_pin_the_torch_build_that_made_the_outputs():
    pins = versions.pinned()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert "ftlib" not in pins and "mlxtend" not in pins


def test_pinned_reads_exact_pins_by_normalized_name_and_ignores_the_rest(tmp_path):
    path = _constraints(tmp_path, "# a comment\nTyping_Extensions==4.16.0\ntorch == 2.14.1  # why\nnumpy>=1.24\n\n")
    assert versions.pinned(path) == {"typing-extensions": "4.16.0", "torch": "2.14.1"}
    assert versions.pinned(tmp_path / "missing.txt") == {}  # an installed wheel has no .ci/: nothing to compare


def test_no_warning_when_the_installed_versions_are_the_pinned_ones(tmp_path, capsys):
    path = _constraints(tmp_path, f"torch=={versions.installed('torch').split('+')[0]}\n")
    assert versions.warn_if_different("the outputs", ("torch",), path) is None
    assert capsys.readouterr().err == ""


def test_local_build_labels_do_not_count(tmp_path, monkeypatch):
    monkeypatch.setattr(versions, "installed", lambda name: "2.14.1+cpu")
    assert versions.differences(("torch",), _constraints(tmp_path, "torch==2.14.1\n")) == []


def test_one_clear_warning_line_names_what_differs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(versions, "installed", {"torch": "2.15.0+cu130", "numpy": None}.get)
    path = _constraints(tmp_path, "torch==2.14.1\nnumpy==2.4.6\ntorchvision==0.29.1\n")
    message = versions.warn_if_different("the shipped checkpoints", ("torch", "numpy"), path)
    err = capsys.readouterr().err
    assert err == message + "\n" and err.count("\n") == 1
    assert message.startswith("warning: torch 2.15.0+cu130 (pinned 2.14.1), numpy not installed (pinned 2.4.6): "
                              "the shipped checkpoints were made with")
