"""Issue 25, item 12: inputs that ended in a traceback or a crash now end in one line on stderr and exit 2, checked
before anything trains or writes. Parsers get a hypothesis property beside the probes."""

from __future__ import annotations

import pytest
from test_hostile_input import assert_usage_error


# -- bench ticket --width that builds nothing -------------------------------------------------------------------
@pytest.mark.parametrize("model", ["small_cnn", "vgg11"])
@pytest.mark.parametrize("width", ["0", "-2", "nan", "inf"])
def test_ticket_width_that_builds_no_model_is_one_line_before_training(tmp_path, capsys, model, width):
    """vgg11 clamped -2 to 1-channel layers and trained that (exit 0); small_cnn and nan crashed mid-build."""
    out = tmp_path / "t"
    args = ["ticket", "--model", model, "--method", "dense", "--sparsity", "0", "--epochs", "0"]
    args += ["--finetune-epochs", "0", "--dataset", "synthetic", f"--width={width}", "--out", str(out)]
    assert_usage_error(capsys, args, "width must be a finite number > 0")
    assert not out.exists()
