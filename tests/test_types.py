import json

import pytest

from nasplug.core.types import Choice, Genotype, Task

DARTS_V2 = (
    "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)


def test_darts_v2_string_parses_to_the_published_cell():
    g = Genotype.parse(DARTS_V2)
    assert g.space == "cell"
    assert g.spec["normal"][0] == ("sep_conv_3x3", 0)
    assert g.spec["normal"][7] == ("dil_conv_3x3", 2)
    assert g.spec["reduce"][2] == ("skip_connect", 2)
    assert list(g.spec["normal_concat"]) == [2, 3, 4, 5]
    assert list(g.spec["reduce_concat"]) == [2, 3, 4, 5]


def test_genotype_json_round_trip_and_hash():
    g = Genotype.parse(DARTS_V2)
    back = Genotype.from_json(g.to_json())
    assert back == g and hash(back) == hash(g)
    assert json.loads(g.to_json())["spec"]["normal"][0] == ["sep_conv_3x3", 0]
    assert Genotype.parse(g.to_json()) == g


def test_genotype_spec_is_read_only():
    g = Genotype("x", {"choices": {"a": "b"}})
    with pytest.raises(TypeError):
        g.spec["choices"] = {}


@pytest.mark.parametrize(
    "text",
    [
        "Genotype(normal=__import__('os').system('true'), normal_concat=[2], reduce=[], reduce_concat=[2])",
        "os.system('echo hi')",
        "Genotype(normal=[('a', 0)], bogus=[1], reduce=[], reduce_concat=[], normal_concat=[])",
        "Genotype(normal=[('a', 0)])",
        "{not json",
    ],
)
def test_bad_genotype_text_is_rejected_without_evaluating(text):
    with pytest.raises(ValueError):
        Genotype.parse(text)


def test_task_metric_and_direction():
    assert Task("classification", (1, 28, 28), 10).metric == "accuracy"
    reg = Task("regression", (10,), 1)
    assert reg.metric == "r2" and reg.better(0.9, 0.8)
    ml = Task("multilabel", (1, 28, 56), 10)
    assert ml.metric == "bce" and ml.better(0.1, 0.2)
    assert Task.from_dict(ml.to_dict()) == ml
    with pytest.raises(ValueError, match="accepted"):
        Task("ranking", (3,), 1)


def test_choice_needs_candidates():
    with pytest.raises(ValueError):
        Choice("e", ())
