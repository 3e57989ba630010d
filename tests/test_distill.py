"""The loop on real SST-2 text with tiny models: teacher cache, resume, best checkpoint."""

import platform
import resource

import datasets
import pytest
import torch

from ukd_compress import losses
from ukd_compress.data import Collator, epoch_order, text_lengths
from ukd_compress.distill import Distiller, LoopData, Teaching, keep_freed_memory
from ukd_compress.errors import Interrupted
from ukd_compress.heads import PseudoClassifiers, WithPseudoClassifiers
from ukd_compress.recipe import Recipe
from ukd_compress.students import truncated_teacher
from ukd_compress.tasks import get_task, load_glue, subsample
from ukd_compress.teacher import train_pseudo_classifiers

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


def test_the_cache_starts_from_what_stage_1_computed_matched_by_text(tmp_path, sst2,
                                                                    minilm_tokenizer):
    recipe, teacher, student, kept = make()
    task, (train, evals) = get_task("sst2"), sst2
    teacher.pseudo, _, known = train_pseudo_classifiers(
        teacher.backbone, minilm_tokenizer, task, train, evals, recipe, torch.device("cpu"))
    teacher.eval()
    collate = Collator(minilm_tokenizer, minilm_tokenizer, 64)

    def distiller(split: datasets.Dataset, folder: str) -> Distiller:
        split = split.map(lambda _, i: {"idx": i}, with_indices=True)
        return Distiller(recipe.training, recipe.method, LoopData(task, split, evals, collate),
                         student, tmp_path / folder, teaching=Teaching(teacher, kept, known=known),
                         quiet=True)

    # 80 of stage 1's examples in another order, then 16 texts it never read
    unseen = [i for i, text in enumerate(evals["validation"]["text_a"])
              if text not in set(train["text_a"])][:16]
    mixed = distiller(datasets.concatenate_datasets([train.shuffle(seed=3).select(range(80)),
                                                     evals["validation"].select(unseen)]), "a")
    assert mixed.prefilled == 80 and mixed.cache.filled.tolist() == [True] * 80 + [False] * 16
    batch = collate(mixed.train_split[:80])
    with torch.no_grad():
        direct = teacher(**batch.teacher_inputs)
    cached = mixed.cache.get(batch.idx)
    assert torch.allclose(cached.logits, direct.logits, atol=0.02)  # stage 1 ran under bf16
    assert torch.allclose(cached.pseudo_logits, direct.pseudo_logits, atol=0.02)

    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    distiller(train.shuffle(seed=4), "b").train()
    assert not calls  # every example's outputs were known: the teacher never ran


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a setting of glibc's malloc")
def test_big_freed_tensors_are_reused_not_faulted_in_again():
    def faults_of_five_64mb_tensors() -> int:  # each over glibc's largest mmap threshold, 32 MB
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.zeros(16 << 20)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    keep_freed_memory()
    torch.zeros(16 << 20)
    assert faults_of_five_64mb_tensors() < 2 * 16384  # 5 fresh mmaps: 5 x 16,384 4-KiB pages


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
