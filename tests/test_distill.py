"""The loop on real SST-2 text with tiny models: teacher cache, resume, best checkpoint."""

import pytest
import torch

from ukd_compress import losses
from ukd_compress.data import Collator, epoch_order, text_lengths
from ukd_compress.distill import Distiller, LoopData, Teaching
from ukd_compress.errors import Interrupted
from ukd_compress.heads import PseudoClassifiers, WithPseudoClassifiers
from ukd_compress.recipe import Recipe
from ukd_compress.students import truncated_teacher
from ukd_compress.tasks import get_task, load_glue, subsample

from conftest import DATA_DIR, tiny


@pytest.fixture(scope="module")
def sst2():
    splits = load_glue(get_task("sst2"), DATA_DIR)
    return subsample(splits["train"], 96, 0), {"validation": subsample(splits["validation"], 48, 0)}


def make(method="ukd", cache=True, checkpoint_every=100, workers=None):
    teacher_model = tiny("bert")
    teacher = WithPseudoClassifiers(teacher_model, PseudoClassifiers([32] * 4, 2)).eval()
    student_model, kept = truncated_teacher(teacher_model, 2)
    torch.manual_seed(1)
    student = WithPseudoClassifiers(student_model, PseudoClassifiers([32] * 2, 2))
    recipe = Recipe().replace("method", name=method).replace(
        "training", epochs=2, batch_size=16, lr=1e-3, cache_teacher=cache,
        checkpoint_every=checkpoint_every, loader_workers=workers)
    return recipe, teacher, student, kept


def loop_data(sst2, collate: Collator) -> LoopData:
    return LoopData(get_task("sst2"), sst2[0], sst2[1], collate)


def run(tmp_path, sst2, minilm_tokenizer, **kwargs) -> tuple[Distiller, list]:
    recipe, teacher, student, kept = make(**kwargs)
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    collate = Collator(minilm_tokenizer, minilm_tokenizer, 64)
    distiller = Distiller(recipe.training, recipe.method, loop_data(sst2, collate), student,
                          tmp_path, teaching=Teaching(teacher, kept), quiet=True)
    torch.manual_seed(7)
    distiller.train()
    return distiller, calls


def test_cached_and_uncached_teacher_give_the_same_losses(tmp_path, sst2, minilm_tokenizer):
    cached, cached_calls = run(tmp_path / "a", sst2, minilm_tokenizer, cache=True)
    plain, plain_calls = run(tmp_path / "b", sst2, minilm_tokenizer, cache=False)
    assert len(cached.progress.losses) == 12
    assert cached.progress.losses == pytest.approx(plain.progress.losses, rel=1e-5, abs=1e-6)
    assert len(cached_calls) == 6 and len(plain_calls) == 12  # epoch 2 read the cache
    assert cached.cache.filled.all()


def test_batches_collated_by_loader_workers_train_exactly_the_same(tmp_path, sst2,
                                                                    minilm_tokenizer):
    inline, _ = run(tmp_path / "a", sst2, minilm_tokenizer)
    workers, _ = run(tmp_path / "b", sst2, minilm_tokenizer, workers=2)
    assert workers.progress.losses == pytest.approx(inline.progress.losses, rel=1e-5, abs=1e-6)


def test_hidden_space_methods_run_the_teacher_every_step(tmp_path, sst2, minilm_tokenizer):
    distiller, calls = run(tmp_path, sst2, minilm_tokenizer, method="ukd+alp")
    assert distiller.cache is None and len(calls) == 12
    assert all(torch.isfinite(torch.tensor(distiller.progress.losses)))


def test_an_interrupted_run_resumes_where_its_checkpoint_left_off(tmp_path, sst2, minilm_tokenizer):
    full, _ = run(tmp_path / "full", sst2, minilm_tokenizer, checkpoint_every=2)
    recipe, teacher, student, kept = make(checkpoint_every=2)
    collate = Collator(minilm_tokenizer, minilm_tokenizer, 64)
    forwards = []

    def stop_on_eighth(*_):
        forwards.append(1)
        if len(forwards) == 8:
            raise KeyboardInterrupt

    hook = student.register_forward_pre_hook(stop_on_eighth)
    first = Distiller(recipe.training, recipe.method, loop_data(sst2, collate), student,
                      tmp_path / "cut", teaching=Teaching(teacher, kept), quiet=True)
    torch.manual_seed(7)
    with pytest.raises(Interrupted, match="stopped at step 7"):
        first.train()
    hook.remove()
    _, teacher, student, kept = make(checkpoint_every=2)  # a fresh process: new, untrained models
    second = Distiller(recipe.training, recipe.method, loop_data(sst2, collate), student,
                       tmp_path / "cut", teaching=Teaching(teacher, kept), quiet=True)
    second.train(resume=True)
    assert second.progress.step == 12
    assert second.progress.losses == pytest.approx(full.progress.losses, rel=1e-4, abs=1e-6)
    assert second.progress.best_metric == pytest.approx(full.progress.best_metric)


def test_length_grouped_order_is_a_seeded_permutation_with_less_padding(minilm_tokenizer):
    train = subsample(load_glue(get_task("sst2"), DATA_DIR)["train"], 2000, 0)
    lengths = text_lengths(train)
    tokens = [len(ids) for ids in minilm_tokenizer(list(train["text_a"]))["input_ids"]]

    def padded(order):  # tokens a run pads its batches of 32 to, over the real tokens
        return sum(32 * max(tokens[i] for i in order[b:b + 32].tolist())
                   for b in range(0, len(order), 32)) / sum(tokens)

    grouped = epoch_order(len(train), 42, 0, lengths, 32)
    assert sorted(grouped.tolist()) == list(range(len(train)))
    assert torch.equal(grouped, epoch_order(len(train), 42, 0, lengths, 32))  # resumable
    assert not torch.equal(grouped, epoch_order(len(train), 42, 1, lengths, 32))
    assert padded(grouped) < 0.5 * padded(epoch_order(len(train), 42, 0))


def test_last_layer_classifier_puts_the_final_logits_in_place_of_the_last_pseudo_head(
        tmp_path, sst2, minilm_tokenizer):
    recipe, teacher, student, kept = make()
    collate = Collator(minilm_tokenizer, minilm_tokenizer, 64)
    batch = collate(sst2[0][:8])
    terms = {}
    for last in ("pseudo", "classifier"):
        r = recipe.replace("method", last_layer=last, alpha=0.0, beta=0.0)
        d = Distiller(r.training, r.method, loop_data(sst2, collate), student, tmp_path / last,
                      teaching=Teaching(teacher, kept), quiet=True)
        d.student.eval()
        terms[last] = d.loss_terms(batch)["ukd"].item()
        s, t = d.student(**batch.student_inputs), teacher(**batch.teacher_inputs)
    expected = losses.ukd(torch.stack([s.pseudo_logits[:, 0], s.logits], 1).float(),
                          torch.cat([t.pseudo_logits[:, :-1], t.logits.unsqueeze(1)], 1).float(),
                          2.0)
    assert terms["classifier"] == pytest.approx(expected.item(), rel=1e-2)  # bf16 on some CPUs
    assert terms["classifier"] != pytest.approx(terms["pseudo"], rel=0.1)
