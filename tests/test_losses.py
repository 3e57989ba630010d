import pytest
import torch

from ukd_compress import losses
from ukd_compress.heads import PseudoClassifiers, WithPseudoClassifiers

from conftest import tiny


def test_layer_attention_rows_sum_to_one():
    torch.manual_seed(0)
    for space in ("logits", "logprobs"):
        for scale in (False, True):
            a = losses.layer_attention(torch.randn(5, 3, 4), torch.randn(5, 7, 4), space, scale)
            assert a.shape == (5, 3, 7)
            assert torch.allclose(a.sum(-1), torch.ones(5, 3), atol=1e-6)
            assert (a >= 0).all()


def test_attention_prefers_the_teacher_layer_that_agrees():
    teacher = torch.tensor([[[5.0, -5.0], [-5.0, 5.0]]])   # layer 0 says class 0, layer 1 class 1
    student = torch.tensor([[[-4.0, 4.0]]])                 # the student layer says class 1
    a = losses.layer_attention(student, teacher)
    assert a[0, 0, 1] > 0.99


def test_ukd_is_zero_when_student_matches_projected_teacher():
    torch.manual_seed(0)
    z = torch.randn(8, 1, 3)
    teacher = z.repeat(1, 6, 1)          # every teacher layer says z: the projection is z
    student = z.repeat(1, 2, 1)
    assert losses.ukd(student, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.ukd(student + torch.randn_like(student), teacher, 2.0).item() > 1e-3


def test_ukd_target_is_the_attention_mix_of_teacher_layers():
    torch.manual_seed(1)
    student, teacher = torch.randn(4, 2, 3), torch.randn(4, 5, 3)
    mix = losses.layer_attention(student, teacher) @ teacher
    expected = losses.soft_target_loss(student, mix, 1.0)  # the mean over the 2 student layers
    assert losses.ukd(student, teacher, 1.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_kd_pkd_alp_are_zero_on_agreement_and_positive_otherwise():
    torch.manual_seed(2)
    logits, states = torch.randn(4, 3), torch.randn(4, 2, 16)
    assert losses.kd(logits, logits, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.kd(logits, -logits, 2.0).item() > 0.1
    assert losses.pkd(states, 3 * states).item() == pytest.approx(0.0, abs=1e-6)  # normalised
    assert losses.pkd(states, torch.randn(4, 2, 16)).item() > 0.1
    assert losses.alp(states, torch.randn(4, 5, 16)).item() > 0.0


def test_regression_uses_mean_squared_error():
    s, t = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [2.0]])
    assert losses.kd(s, t, 2.0).item() == pytest.approx(0.125)
    assert losses.task_loss(s, torch.tensor([1.0, 3.0])).item() == pytest.approx(0.5)


def test_gradients_reach_the_student_and_never_the_teacher():
    teacher_model, student_model = tiny("bert"), tiny("cnn")
    teacher = WithPseudoClassifiers(teacher_model, PseudoClassifiers([32] * 4, 2))
    student = WithPseudoClassifiers(student_model, PseudoClassifiers([16] * 3, 2))
    teacher.train(), student.train()
    ids = torch.randint(5, 1000, (4, 12))
    mask = torch.ones_like(ids)
    t = teacher(input_ids=ids, attention_mask=mask)
    s = student(input_ids=ids, attention_mask=mask)
    loss = (losses.task_loss(s.logits, torch.tensor([0, 1, 0, 1])) + losses.kd(s.logits, t.logits, 2.0)
            + losses.ukd(s.pseudo_logits, t.pseudo_logits, 2.0))
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.backbone.embeddings.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.pseudo.parameters()
               if p.ndim > 1)


def test_teacher_window_lets_each_student_layer_see_teacher_layers_at_or_above_its_depth():
    assert losses.teacher_window(2, 6).tolist() == [[False, False, True, True, True, True],
                                                    [False, False, False, False, False, True]]
    assert losses.teacher_window(4, 4).tolist() == torch.eye(4, dtype=torch.bool).logical_not() \
        .tril().logical_not().tolist()  # layer i sees layers i..4


def test_attention_outside_the_allowed_layers_is_zero_and_rows_still_sum_to_one():
    torch.manual_seed(3)
    allowed = losses.teacher_window(2, 6)
    a = losses.layer_attention(torch.randn(5, 2, 3), torch.randn(5, 6, 3), allowed=allowed)
    assert (a[:, ~allowed] == 0).all()
    assert torch.allclose(a.sum(-1), torch.ones(5, 2), atol=1e-6)
    assert torch.allclose(a[:, 1, 5], torch.ones(5))  # the last student layer: the last teacher's


def test_attention_temperature_flattens_and_mean_divides_by_the_layers():
    torch.manual_seed(4)
    s, t = 3 * torch.randn(6, 2, 3), 3 * torch.randn(6, 5, 3)
    sharp, flat = losses.layer_attention(s, t), losses.layer_attention(s, t, temperature=1000.0)
    assert flat.max() < sharp.max() and torch.allclose(flat, torch.full_like(flat, 0.2), atol=0.05)
    total = losses.ukd(s, t, 2.0, reduce="sum")
    assert losses.ukd(s, t, 2.0).item() == pytest.approx(total.item() / 2, rel=1e-6)


def test_regression_attention_goes_to_the_closest_teacher_layer_not_the_largest():
    teacher = torch.tensor([[[0.5], [2.0], [4.5]]])   # three teacher layers predict 0.5, 2, 4.5
    student = torch.tensor([[[2.1]]])
    a = losses.layer_attention(student, teacher)
    assert a.argmax().item() == 1 and a[0, 0, 1] > 0.9  # a dot product would pick 4.5


def test_small_students_use_mse_for_one_label():
    model = tiny("bilstm", num_labels=1)
    ids = torch.randint(5, 1000, (3, 7))
    out = model(input_ids=ids, labels=torch.tensor([1.0, 2.5, 4.0]))
    assert out.loss.item() == pytest.approx(
        torch.nn.functional.mse_loss(out.logits.squeeze(-1), torch.tensor([1.0, 2.5, 4.0])).item())


def test_the_correct_gate_keeps_a_wrong_student_from_the_teacher_layers_wrong_with_it():
    teacher = torch.tensor([[[5.0, -5.0], [-5.0, 5.0]],     # example 0: layer 0 right (label 0)
                            [[5.0, -5.0], [4.0, -4.0]]])    # example 1: both wrong (label 1)
    student = torch.tensor([[[-4.0, 4.0]], [[4.0, -4.0]]])  # both student layers say the wrong class
    labels = torch.tensor([0, 1])
    gate = losses.correct_layers(teacher, labels)
    assert gate.tolist() == [[[True, False]], [[True, True]]]  # none right: all stay
    ungated = losses.layer_attention(student, teacher)
    gated = losses.layer_attention(student, teacher, allowed=gate)
    assert ungated[0, 0, 1] > 0.99 and gated[0, 0, 0] == 1.0
    assert torch.equal(gated[1], ungated[1])
    window = torch.tensor([[False, True]])                  # within a plan's layers: none right
    assert losses.correct_layers(teacher, labels, window).tolist() == [[[False, True]],
                                                                       [[False, True]]]
