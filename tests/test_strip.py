import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification

from ukd_compress.heads import PseudoClassifiers, WithPseudoClassifiers, backbone_widths
from ukd_compress.errors import CheckFailed
from ukd_compress.strip import strip

from conftest import tiny


@pytest.mark.parametrize("family", ["bert", "roberta", "bilstm", "cnn"])
def test_stripped_student_matches_the_unstripped_final_head(family, tmp_path, minilm_tokenizer):
    model = tiny(family)
    wrapped = WithPseudoClassifiers(model, PseudoClassifiers(backbone_widths(model), 2)).eval()
    folder = strip(wrapped, minilm_tokenizer, tmp_path / "student")
    loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = minilm_tokenizer(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = wrapped(**enc).logits
        got = loaded(**enc).logits
    assert torch.allclose(got, expected, atol=1e-6)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "pseudo" in k]
    assert (folder / "tokenizer.json").is_file()
    assert not (tmp_path / "student.tmp").exists()


def test_strip_refuses_weights_a_stock_model_does_not_have(tmp_path, minilm_tokenizer):
    model = tiny("bert")
    model.bert.probe = torch.nn.Linear(4, 2)  # e.g. a projection left on the backbone
    wrapped = WithPseudoClassifiers(model, PseudoClassifiers(backbone_widths(model), 2))
    with pytest.raises(CheckFailed, match="bert.probe.weight"):
        strip(wrapped, minilm_tokenizer, tmp_path / "student")
