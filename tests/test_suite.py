from pathlib import Path

import pytest

from ticketbench.bench.suite import SuiteError, builtin_suites, load_suite

TINY = Path(__file__).parent / "data" / "tiny_suite.toml"


def test_quick_suite_tells_the_story():
    suite = load_suite("quick")
    methods = [(c.ticket.method, c.ticket.sparsity) for c in suite.cases]
    assert methods == [("dense", 0.0), ("magnitude", 0.8), ("eb", 0.5), ("mpt", 0.8)]
    mpt = suite.cases[-1].ticket
    assert mpt.options["structure"] == "group" and mpt.data_options == {"size": 32}
    assert len({c.case_id for c in suite.cases}) == len(suite.cases)
    assert "quick" in builtin_suites()


def test_case_id_changes_with_config():
    a = load_suite(str(TINY)).cases[1]
    b_cfg = a.ticket.__class__(**{**a.ticket.__dict__, "seed": 1})
    assert a.case_id != type(a)(b_cfg).case_id
    assert a.case_id.startswith("small_cnn-digits-magnitude-s0.80-")


@pytest.mark.parametrize(
    "text, msg",
    [
        ("[[cases]]\nmodel='small_cnn'\ndataset='digits'\nmethod='dense'\nbogus=1\n", "unknown keys"),
        ("name='x'\n", "no [[cases]]"),
        ("[[cases]]\nmethod='dense'\n", "needs model, dataset and method"),
        ("[[cases\n", "invalid TOML"),
        ("[measure]\nnope=1\n[[cases]]\nmodel='a'\ndataset='b'\nmethod='dense'\n", "unknown [measure] keys"),
    ],
)
def test_bad_suites_are_clear(tmp_path, text, msg):
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(SuiteError, match=msg.replace("[", r"\[")):
        load_suite(str(p))


def test_unknown_suite_names_builtins():
    with pytest.raises(SuiteError, match="quick"):
        load_suite("nope")
