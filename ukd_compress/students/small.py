"""Cross-architecture students: a BiLSTM and a CNN on the teacher's tokenizer.

They are ``PreTrainedModel`` subclasses so that ``save_pretrained``/``from_pretrained`` (safetensors)
work as for any transformer, and they return ``hidden_states`` as one pooled (batch, width) vector
per layer, preceded by the pooled embeddings, which is what :func:`ukd_compress.heads.layer_states`
expects.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForSequenceClassification, PretrainedConfig,
                          PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutput


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over valid tokens: x (batch, tokens, width), mask (batch, tokens) -> (batch, width)."""
    return x.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(x.dtype).min).amax(dim=1)


class SmallStudentConfig(PretrainedConfig):
    """Config of the BiLSTM and CNN students; ``layer_widths`` tells the adapter each layer's width."""

    def __init__(self, vocab_size: int = 30522, embedding_dim: int = 256, hidden_size: int = 256,
                 num_hidden_layers: int = 2, kernel_size: int = 3, dropout: float = 0.1,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.embedding_dim, self.hidden_size = vocab_size, embedding_dim, hidden_size
        self.num_hidden_layers, self.kernel_size, self.dropout = num_hidden_layers, kernel_size, dropout


class BiLSTMConfig(SmallStudentConfig):
    model_type = "ukd_bilstm"

    @property
    def layer_widths(self) -> list[int]:
        return [2 * self.hidden_size] * self.num_hidden_layers


class CNNConfig(SmallStudentConfig):
    model_type = "ukd_cnn"

    @property
    def layer_widths(self) -> list[int]:
        return [self.hidden_size] * self.num_hidden_layers


class _SmallStudent(PreTrainedModel):
    """Embeddings -> layers -> max-pooled last layer -> linear classifier."""

    base_model_prefix = "student"

    def __init__(self, config: SmallStudentConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim,
                                       padding_idx=config.pad_token_id)
        self.layers = self._build_layers(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.layer_widths[-1], config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def _build_layers(self, config: SmallStudentConfig) -> nn.ModuleList:
        raise NotImplementedError

    def _run_layer(self, layer: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool = False,
                **_ignored) -> SequenceClassifierOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        keep = mask.unsqueeze(-1).to(self.embeddings.weight.dtype)
        x = self.dropout(self.embeddings(input_ids)) * keep
        pooled = [_masked_max(x, mask)]
        for layer in self.layers:
            x = self.dropout(self._run_layer(layer, x, mask)) * keep
            pooled.append(_masked_max(x, mask))
        logits = self.classifier(pooled[-1])
        loss = None
        if labels is not None:  # as Transformers' classifiers: MSE for one label (regression)
            loss = (nn.functional.mse_loss(logits.squeeze(-1), labels.float())
                    if self.config.num_labels == 1 else nn.functional.cross_entropy(logits, labels))
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=tuple(pooled) if output_hidden_states else None)


class BiLSTMForSequenceClassification(_SmallStudent):
    """A stacked bidirectional LSTM; layer l's state is its max-pooled output. Sequences are
    packed, so the backward direction starts at each text's last token, not in its padding: a
    text's answer does not depend on the longest text in its batch (ONNX: LSTM's sequence_lens)."""

    config_class = BiLSTMConfig

    def _build_layers(self, config: SmallStudentConfig) -> nn.ModuleList:
        widths = [config.embedding_dim] + config.layer_widths[:-1]
        return nn.ModuleList(nn.LSTM(w, config.hidden_size, batch_first=True, bidirectional=True)
                             for w in widths)

    def _run_layer(self, layer: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()  # right padding: valid tokens come first
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = layer(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]


class CNNForSequenceClassification(_SmallStudent):
    """Stacked 1-D convolutions with ReLU; block l's state is its max-pooled feature map."""

    config_class = CNNConfig

    def _build_layers(self, config: SmallStudentConfig) -> nn.ModuleList:
        widths = [config.embedding_dim] + config.layer_widths[:-1]
        return nn.ModuleList(nn.Conv1d(w, config.hidden_size, config.kernel_size,
                                       padding=config.kernel_size // 2) for w in widths)

    def _run_layer(self, layer: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.relu(layer(x.transpose(1, 2))).transpose(1, 2)


SMALL_STUDENTS = {"bilstm": (BiLSTMConfig, BiLSTMForSequenceClassification),
                  "cnn": (CNNConfig, CNNForSequenceClassification)}

for _config_cls, _model_cls in SMALL_STUDENTS.values():
    # Registered so that AutoModelForSequenceClassification loads a saved student once
    # ukd_compress is imported.
    AutoConfig.register(_config_cls.model_type, _config_cls)
    AutoModelForSequenceClassification.register(_config_cls, _model_cls)
