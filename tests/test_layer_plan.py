"""The UKD knobs as a recipe gives them: which layers carry the term, what they attend to, when."""

import pytest

from ukd_compress.distill import Distiller
from ukd_compress.layer_plan import layer_plan
from ukd_compress.recipe import MethodConfig, Recipe
from ukd_compress.errors import UserError

SCORES = [78.2, 80.7, 85.6, 87.8, 88.1, 88.8]  # the SST-2 teacher's pseudo classifiers


def test_default_plan_is_every_student_layer_over_every_teacher_layer():
    plan = layer_plan(MethodConfig(), 2, 6, SCORES)
    assert plan.student == [0, 1] and plan.describe() == [list(range(6))] * 2


def test_all_but_last_window_and_weak_layers_combine():
    plan = layer_plan(MethodConfig(ukd_layers="all_but_last", teacher_layers="window"), 3, 6)
    assert plan.student == [0, 1] and plan.describe() == [[1, 2, 3, 4, 5], [3, 4, 5]]
    plan = layer_plan(MethodConfig(drop_weak_layers=3.0), 2, 6, SCORES)
    assert plan.describe() == [[3, 4, 5]] * 2   # within 3 points of the best (88.8)
    plan = layer_plan(MethodConfig(drop_weak_layers=0.0, teacher_layers="window"), 6, 6, SCORES)
    assert plan.describe() == [[5]] * 6  # a row left empty gets the best teacher layer
    plan = layer_plan(MethodConfig(teacher_layers="top_for_last"), 3, 6)
    assert plan.describe() == [list(range(6))] * 2 + [[5]]


def test_gamma_schedules_change_the_weights_over_training():
    class At(Distiller):  # the schedule alone, without building a run
        def __init__(self, schedule: str, step: int):
            self.loss = Recipe().replace("method", gamma_schedule=schedule).method
            self.weights = self.loss.weights()
            self.total_steps, self.progress = 100, type("P", (), {"step": step})()

    assert At("constant", 90).scheduled_weights()["gamma"] == 0.5
    assert At("decay", 0).scheduled_weights()["gamma"] == 0.5
    assert At("decay", 75).scheduled_weights()["gamma"] == pytest.approx(0.125)
    first, second = At("two_stage", 49).scheduled_weights(), At("two_stage", 50).scheduled_weights()
    assert (first["alpha"], first["beta"], first["gamma"]) == (0.0, 0.0, 0.5)
    assert (second["alpha"], second["beta"], second["gamma"]) == (0.5, 0.5, 0.0)


@pytest.mark.parametrize("knob, value", [("ukd_layers", "some"), ("teacher_layers", "near"),
                                         ("gamma_schedule", "cosine"), ("layer_reduce", "max"),
                                         ("attention_temperature", 0.0)])
def test_bad_knobs_are_refused_by_name(knob, value):
    with pytest.raises(UserError, match="method.|temperatures"):
        Recipe().replace("method", **{knob: value}).validate()
