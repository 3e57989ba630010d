import pytest
import torch

from ukd_compress.errors import UserError
from ukd_compress.heads import PseudoClassifiers, WithPseudoClassifiers, backbone_widths
from ukd_compress.students import check_fits, layer_list, parse_spec, truncated_teacher

from conftest import FAMILIES, tiny


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_gives_per_layer_states_and_pseudo_logits(family):
    model = tiny(family, num_labels=3)
    widths = backbone_widths(model)
    wrapped = WithPseudoClassifiers(model, PseudoClassifiers(widths, 3))
    ids = torch.randint(5, 1000, (4, 9))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    out = wrapped(with_states=True, input_ids=ids, attention_mask=mask)
    assert out.logits.shape == (4, 3)
    assert out.pseudo_logits.shape == (4, len(widths), 3)
    assert out.states.shape == (4, len(widths), widths[0])
    out.pseudo_logits.sum().backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["cnn", "bilstm"])
def test_small_students_ignore_padding(kind):
    model = tiny(kind).eval()
    ids = torch.randint(5, 1000, (1, 6))
    padded = torch.cat([ids, torch.randint(5, 1000, (1, 3))], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 3)], dim=1).long()
    a = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    b = model(input_ids=padded, attention_mask=mask).logits
    assert torch.allclose(a, b, atol=1e-6)  # the LSTM's backward pass starts at the last token


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_truncated_teacher_keeps_evenly_spaced_layers(family):
    teacher = tiny(family)
    student, kept = truncated_teacher(teacher, 2)
    assert kept == [1, 3]
    assert student.config.num_hidden_layers == 2
    ids = torch.randint(5, 1000, (2, 7))
    full, _ = truncated_teacher(teacher, 4)
    assert torch.allclose(full(input_ids=ids).logits, teacher(input_ids=ids).logits, atol=1e-6)
    assert not torch.allclose(student(input_ids=ids).logits, teacher(input_ids=ids).logits)
    assert teacher.config.num_hidden_layers == 4  # the teacher itself is untouched


def test_truncation_beyond_the_teachers_depth_is_a_clear_error():
    with pytest.raises(UserError, match="1 to 4 layers"):
        truncated_teacher(tiny("bert"), 5)


def test_a_student_may_name_the_teacher_layers_it_keeps():
    teacher = tiny("bert")
    kind, layers = parse_spec("teacher:0,3")
    student, kept = truncated_teacher(teacher, layers)
    assert (kind, kept, student.config.num_hidden_layers) == ("teacher", [0, 3], 2)
    for i, j in enumerate(kept):
        assert torch.equal(layer_list(student)[i].output.dense.weight,
                           layer_list(teacher)[j].output.dense.weight)
    for bad in ("teacher:3,0", "teacher:0,4", "teacher:1,1", "teacher:0,"):
        with pytest.raises(UserError, match="teacher"):
            check_fits(bad, 4)


def test_layer_states_pool_valid_tokens_or_take_the_first():
    from ukd_compress.heads import layer_states

    h = torch.arange(24.0).reshape(1, 4, 6).repeat(2, 1, 1)
    hidden = (torch.zeros_like(h), h)      # embeddings are skipped
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    mean = layer_states(hidden, mask, "mean")[0]
    assert torch.allclose(mean[0], h[0, :2].mean(0)) and torch.allclose(mean[1], h[1].mean(0))
    assert torch.equal(layer_states(hidden, mask, "cls")[0], h[:, 0])
    pooled = torch.randn(2, 6)
    assert layer_states((pooled, pooled), mask, "mean")[0] is pooled
