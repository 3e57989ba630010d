"""The benchmarks' own arithmetic: FLOPs floors and the tables they write."""

import json

from transformers import BertConfig

from benchmarks.infer import encoder_flops
from benchmarks.results import markdown_table, write_results
from ukd_compress.students.small import CNNConfig


def test_bert_base_flops_match_the_known_figure():
    # BERT-base at 128 tokens: ~2 x 85M encoder weights x 128 tokens + attention = 22.35 GFLOPs
    flops = encoder_flops(BertConfig(), batch=1, seq_len=128)
    assert abs(flops / 1e9 - 22.35) < 0.01
    assert encoder_flops(BertConfig(), batch=32, seq_len=128) == 32 * flops
    assert encoder_flops(CNNConfig(), 1, 128) is None  # no encoder formula for the CNN


def test_results_are_json_markdown_and_png(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.bar(["a"], [1])
    table = markdown_table(["mode", "req/s"], [["batching", 10.5]])
    assert table.splitlines() == ["| mode | req/s |", "|---|---|", "| batching | 10.5 |"]
    path = write_results("demo", {"x": 1}, table, fig, out=tmp_path)
    data = json.loads(path.read_text())
    assert data["x"] == 1 and data["benchmark"] == "demo" and "cpu_threads" in data["machine"]
    assert (tmp_path / "demo.md").read_text() == table
    assert (tmp_path / "demo.png").stat().st_size > 1000
    assert not list(tmp_path.glob("*.tmp*"))
