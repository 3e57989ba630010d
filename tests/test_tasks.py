import json

import numpy as np
import pytest

from ukd_compress.errors import UserError
from ukd_compress.recipe import Recipe
from ukd_compress.tasks import (compute_metrics, find_data_dir, get_task, load_files, load_glue,
                                offline_tasks, selection_score, trivial_baseline)

from conftest import DATA_DIR


def test_glue_folder_sst2_and_rte_load_with_their_real_sizes():
    assert {"sst2", "rte"} <= set(offline_tasks(find_data_dir(str(DATA_DIR))))
    sst2 = load_glue(get_task("sst2"), DATA_DIR)
    assert (len(sst2["train"]), len(sst2["validation"])) == (67349, 872)
    assert set(sst2["validation"]["label"]) == {0, 1}
    assert sst2["train"][0]["text_b"] is None
    rte = load_glue(get_task("RTE"), DATA_DIR)
    assert (len(rte["train"]), len(rte["validation"])) == (2490, 277)
    row = rte["validation"][0]
    assert row["text_a"] and row["text_b"] and row["label"] in (0, 1)
    assert set(rte["train"]["label"]) == {0, 1}


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(UserError, match="known GLUE tasks: mnli, sst2"):
        get_task("imdb")


def test_task_neither_in_folder_nor_on_hub_says_what_works_offline():
    with pytest.raises(UserError, match="tasks that work offline here: sst2, rte"):
        load_glue(get_task("mnli"), DATA_DIR)


def test_local_csv_and_jsonl(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\ngreat,pos\nawful,neg\nfine,pos\n")
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps({"text": t, "label": l})
                                                  for t, l in [("nice", "pos"), ("bad", "neg")]))
    spec, splits = load_files(str(tmp_path / "train.csv"), str(tmp_path / "dev.jsonl"),
                              ("text",), "label")
    assert spec.label_names == ("neg", "pos")
    assert splits["validation"]["label"] == [1, 0]
    with pytest.raises(UserError, match="lacks column"):
        load_files(str(tmp_path / "train.csv"), str(tmp_path / "dev.jsonl"), ("sentence",), "label")


def test_metrics():
    spec = get_task("mrpc")
    m = compute_metrics(spec, np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), np.array([0, 1, 0]))
    assert list(m) == ["f1", "accuracy"]
    assert m["accuracy"] == pytest.approx(200 / 3)


def test_recipe_round_trips_and_rejects_unknown_keys(tmp_path):
    recipe = Recipe().replace("method", name="ukd+alp", temperature=3.0)
    path = tmp_path / "r.yaml"
    path.write_text(recipe.to_yaml())
    again = Recipe.from_yaml(path)
    assert again == recipe and again.sha256() == recipe.sha256()
    assert again.method.weights()["delta"] == 100.0
    path.write_text("method:\n  name: ukd\n  temprature: 3\n")
    with pytest.raises(UserError, match="temprature"):
        Recipe.from_yaml(path)
    path.write_text("method:\n  name: magic\n")
    with pytest.raises(UserError, match="unknown method"):
        Recipe.from_yaml(path)


def test_best_checkpoint_is_chosen_as_glue_scores_the_task():
    assert selection_score(get_task("sst2"), {"accuracy": 80.0}) == 80.0
    assert selection_score(get_task("cola"), {"mcc": 30.0, "accuracy": 70.0}) == 30.0
    # F1 alone would prefer the collapsed student (always "equivalent": F1 81.2, accuracy 68.4)
    collapsed, learned = {"f1": 81.2, "accuracy": 68.4}, {"f1": 80.0, "accuracy": 72.0}
    assert selection_score(get_task("mrpc"), learned) > selection_score(get_task("mrpc"), collapsed)
    assert selection_score(get_task("stsb"), {"pearson": 80.0, "spearman": 78.0}) == 79.0


def test_trivial_baseline_is_the_majority_class_or_zero_correlation():
    train, dev = np.array([1, 1, 1, 0]), np.array([1, 0, 0, 1, 1])
    assert trivial_baseline(get_task("sst2"), train, dev) == {"accuracy": 60.0}
    mrpc = trivial_baseline(get_task("mrpc"), train, dev)
    assert mrpc["f1"] == pytest.approx(75.0) and mrpc["accuracy"] == 60.0
    assert trivial_baseline(get_task("cola"), train, dev)["mcc"] == 0.0
    assert trivial_baseline(get_task("stsb"), np.array([1.0, 4.0]), dev) == {"pearson": 0.0,
                                                                             "spearman": 0.0}


def test_a_student_near_the_constant_guess_is_warned_about():
    from ukd_compress.pipeline import warnings

    def report(student: float) -> dict:
        return {"student": {"metrics": {"validation": {"f1": student, "accuracy": 70.0}}},
                "baseline": {"name": "majority class",
                             "metrics": {"validation": {"f1": 81.2, "accuracy": 68.4}}}}

    assert "within 1 point of the majority class baseline" in warnings(report(81.49))[0]
    assert warnings(report(84.0)) == []
