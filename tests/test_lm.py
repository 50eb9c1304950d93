"""The tiny language model: tokenizer, shapes, causal masking, RoPE, sampling, checkpoints, corpus and chat data."""

import copy
import math
import random

import pytest
import torch

from ftlib import checkpoint, lora, runtime, schedules
from ftlib.course import pretrain_lm
from ftlib.lm import chat, context, corpus, finetune, generate, model, retrieval, tokenizer
from ftlib.lm.bits import bits_per_char, char_bits
from ftlib.train import fit

SMALL = model.Config(layers=2, dim=32, heads=2, context=16)


def _train(lm, batches, steps, lr, warmup=0, **options):
    """``fit`` with the TinyLM recipe (AdamW, weight decay 0.01, clipping at norm 1, warm-up then cosine)."""
    return fit(lm, batches, steps, lr=lr, weight_decay=0.01, schedule=schedules.warmup_cosine_schedule(warmup),
               clip_grad_norm=1.0, **options)


def _lm(config=SMALL, seed=0):
    runtime.seed_everything(seed)
    return model.TinyLM(config).eval()


def test_tokenizer_round_trips_and_names_unknown_characters():
    text = "User: What does json.dumps do?\nAssistant: ~{}|\n"
    assert tokenizer.VOCAB_SIZE == 96
    assert tokenizer.decode(tokenizer.encode(text)) == text
    with pytest.raises(ValueError, match=r"\['\\t', 'é'\]"):
        tokenizer.encode("caf\u00e9\t")
    assert tokenizer.clean("caf\u00e9\tx\u2014") == "cafe    x"


def test_logits_have_one_row_per_token_and_the_parameter_count_is_the_documented_one():
    lm = _lm()
    assert lm(torch.randint(0, 96, (3, 10))).shape == (3, 10, 96)
    assert sum(p.numel() for p in model.TinyLM().parameters()) == 803_584  # 4 layers, d=128, tied embeddings


def test_a_tokens_output_does_not_depend_on_later_tokens():
    lm = _lm()
    ids = torch.randint(0, 96, (1, 16))
    changed = ids.clone()
    changed[0, 9:] = (changed[0, 9:] + 1) % 96
    a, b = lm(ids), lm(changed)
    assert torch.allclose(a[0, :9], b[0, :9], atol=1e-6)
    assert not torch.allclose(a[0, 9:], b[0, 9:], atol=1e-3)


def test_rope_scores_depend_only_on_the_distance_between_positions():
    q, k = torch.randn(8), torch.randn(8)
    score = lambda m, n: (model.apply_rope(q[None], model.rope_angles(torch.tensor([m]), 8, 10000.0))
                          @ model.apply_rope(k[None], model.rope_angles(torch.tensor([n]), 8, 10000.0)).T).item()
    assert score(3, 1) == pytest.approx(score(40, 38), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    rotated = model.apply_rope(q[None], model.rope_angles(torch.tensor([5]), 8, 10000.0))
    assert rotated.norm().item() == pytest.approx(q.norm().item(), rel=1e-6)  # a rotation keeps lengths


@pytest.mark.slow
def test_generation_is_repeatable_under_a_seed_and_greedy_ignores_it():
    lm = _lm()
    a = generate.generate(lm, "Hello", 20, temperature=1.0, seed=3)
    assert a == generate.generate(lm, "Hello", 20, temperature=1.0, seed=3) and len(a) == 20
    assert a != generate.generate(lm, "Hello", 20, temperature=1.0, seed=4)
    assert generate.generate(lm, "Hello", 8, 0, seed=1) == generate.generate(lm, "Hello", 8, 0, seed=2)
    batch = generate.generate(lm, ["Hello", "World"], 5, seed=0)
    assert isinstance(batch, list) and len(batch) == 2
    with pytest.raises(ValueError, match="equal length"):
        generate.generate(lm, ["Hi", "World"], 5)


@pytest.mark.slow
def test_training_lowers_the_loss_and_bits_per_char_masks_characters():
    lm = _lm()
    text = "the cat sat on the mat. " * 40
    before = bits_per_char(lm, text, SMALL.context)
    assert before == pytest.approx(math.log2(96), abs=0.2)  # a fresh model guesses about uniformly
    history = _train(lm, corpus.batches(text, 8, SMALL.context, seed=0), steps=60, lr=3e-3,
                     evaluate=lambda m: {"bpc": bits_per_char(m, text, SMALL.context)}, eval_every=25)
    assert len(history.loss) == 60 and bits_per_char(lm, text, SMALL.context) < before - 2
    assert sorted(history.evals) == [25, 50, 60] and history.evals[60]["bpc"] < history.evals[25]["bpc"]
    mask = torch.zeros(len(text), dtype=torch.bool)
    mask[1::2] = True
    assert bits_per_char(lm, text, SMALL.context, mask) != bits_per_char(lm, text, SMALL.context)


def test_warmup_cosine_climbs_during_warm_up_then_falls_to_zero():
    factor = lambda step: schedules.warmup_cosine(step, 100, 10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)  # the last warm-up step: full rate
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0)
    assert schedules.warmup_cosine(0, 100, 0) == 1.0  # no warm-up: the cosine alone


def test_finetune_uses_warmup_cosine_and_ends_in_eval_mode(monkeypatch):
    lm, calls, factor = _lm().train(), [], schedules.warmup_cosine
    monkeypatch.setattr(schedules, "warmup_cosine", lambda *args: calls.append(args) or factor(*args))
    tuned, history = finetune.finetune(lm, "abcdefgh " * 20, "full", steps=20, lr=1e-3, seed=0, batch_size=2,
                                       evaluate=lambda m: {"training": m.training}, every=10)
    assert not tuned.training and history.evals == {10: {"training": False}, 20: {"training": False}}
    assert history.eval_step == [10, 20] and len(history.loss) == 20
    # LambdaLR asks at the start and after each of the 20 steps, once per parameter group (one per block)
    assert sorted(set(calls)) == [(s, 20, 2) for s in range(21)]


def test_fit_trains_a_tinylm_exactly_as_a_hand_written_clipped_warmup_cosine_loop():
    """The order ``fit`` promises (zero_grad, forward, loss, backward, clip, step, schedule) to the last bit."""
    text, steps = "the cat sat on the mat. " * 20, 12
    runtime.seed_everything(0)
    start = _lm()
    by_fit, by_hand = copy.deepcopy(start), copy.deepcopy(start)
    history = _train(by_fit, corpus.batches(text, 4, SMALL.context, seed=0), steps, lr=3e-3, warmup=3)
    trainable = [p for p in by_hand.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedules.warmup_cosine(s, steps, 3))
    losses = []
    for _, (x, y) in zip(range(steps), corpus.batches(text, 4, SMALL.context, seed=0)):
        by_hand.train()
        loss = torch.nn.functional.cross_entropy(by_hand(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    assert history.loss == losses
    assert all(torch.equal(a, b) for a, b in zip(by_fit.state_dict().values(), by_hand.state_dict().values()))


@pytest.mark.parametrize("mode", [True, False], ids=["train mode", "eval mode"])
def test_evaluation_helpers_give_the_model_its_mode_back(mode):
    lm, text = _lm(), "User: q?\nAssistant: a.\n" * 20
    chat_text, mask = chat.chat_text([{"turns": [["q?", "a."]] * 10}])
    record = retrieval.random_record(random.Random(0), 2)
    helpers = [lambda: char_bits(lm, text, SMALL.context), lambda: bits_per_char(lm, text, SMALL.context),
               lambda: generate.generate(lm, "Hello", 4), lambda: chat.format_rate(lm, text, prompts=4),
               lambda: chat.reply(lm, "", "q?", max_chars=4), lambda: chat.losses(lm, chat_text, mask, text),
               lambda: context.position_bits(lm, text, SMALL.context),
               lambda: retrieval.retrieval_accuracy(lm, [record])]
    for helper in helpers:
        lm.train(mode)
        helper()
        assert lm.training == mode and all(m.training == mode for m in lm.modules())


def test_helpers_build_their_tensors_on_the_models_device():
    """On this CPU-only machine: a model on "cpu" and text tensors on "cpu" work, and results lie on that device."""
    lm, text = _lm().to("cpu"), "the cat sat on the mat. " * 10
    device = next(lm.parameters()).device
    assert char_bits(lm, text, SMALL.context).device == device
    assert context.position_bits(lm, text, SMALL.context).device == device
    assert model.rope_angles(torch.arange(4, device=device), 8, 10000.0).device == device
    ids = tokenizer.encode(text[:40])[None]
    assert generate.generate(lm, text[:5], 3, temperature=0) == tokenizer.decode(_greedy(lm, ids[:, :5], 3))


def _greedy(lm, ids, new):
    for _ in range(new):
        ids = torch.cat([ids, lm(ids[:, -SMALL.context:])[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, -new:]


def test_checkpoint_round_trip_in_fp16_is_exact(tmp_path):
    lm = _lm().half().float()
    path = checkpoint.save_checkpoint(lm.half(), tmp_path / "lm.safetensors", {"config": SMALL.as_dict()})
    loaded = pretrain_lm.load_pretrained(path)
    ids = torch.randint(0, 96, (2, 12))
    assert loaded.config == SMALL and next(loaded.parameters()).dtype == torch.float32
    assert torch.equal(loaded(ids), _lm().half().float()(ids))


def test_lora_on_the_attention_projections_trains_only_the_adapters():
    lm = lora.add_lora_to_linears(_lm(), ["q", "k", "v", "o"], rank=4, alpha=8)
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 4 * SMALL.layers and all(".attn." in n and "lora_" in n for n in trainable)
    assert sum(p.numel() for p in lm.parameters() if p.requires_grad) == SMALL.layers * 4 * 4 * (32 + 32)
    ids = torch.randint(0, 96, (1, 8))
    assert torch.equal(lm(ids), _lm()(ids))  # a fresh adapter changes nothing
    with pytest.raises(ValueError, match="no nn.Linear named \\['query'\\].*named 0, 2, k, o, q, v"):
        lora.add_lora_to_linears(_lm(), ["query"])


def test_shipped_chat_data_holds_out_whole_topics_and_masks_only_answers():
    train_set, val_set = chat.load_dialogues("train"), chat.load_dialogues("val")
    assert len(train_set) > 10 * len(val_set) > 0
    assert not {d["topic"] for d in train_set} & {d["topic"] for d in val_set}
    text, mask = chat.chat_text(val_set[:2])
    first = val_set[0]["turns"][0]
    assert text.startswith(f"User: {first[0]}\nAssistant: {first[1]}\n")
    answers = "".join(c for c, m in zip(text, mask.tolist()) if m)
    assert answers.startswith(first[1] + "\n") and "User:" not in answers and "Assistant:" not in answers
    with pytest.raises(ValueError, match="'test' is not allowed"):
        chat.load_dialogues("test")


def test_the_chat_builder_is_seeded(tmp_path):
    paths = {s: tmp_path / f"{s}.jsonl" for s in ("train", "val")}
    counts = chat.build_dialogues(0, paths=paths)
    assert counts == {s: len(chat.load_dialogues(s)) for s in ("train", "val")}
    assert all(paths[s].read_bytes() == chat.CHAT_FILES[s].read_bytes() for s in paths)


def test_first_sentence_keeps_sentences_and_drops_signatures():
    sentence = chat.first_sentence("serialize obj to a JSON\nformatted str.  More.")
    assert sentence == "Serialize obj to a JSON formatted str."
    assert chat.first_sentence("dumps(obj) -> str") is None
    assert chat.first_sentence("Short.") is None


def test_prose_split_is_by_document():
    train_text, val_text = corpus.split_text()
    docs = corpus.load_documents()
    assert val_text.startswith(docs[0]["text"]) and train_text.startswith(docs[1]["text"])
    assert len(train_text) > 15 * len(val_text)


@pytest.mark.slow
def test_format_rate_at_temperature_zero_is_the_share_of_greedy_replies_in_turn():
    lm, n = _lm(), len(chat.ASSISTANT)
    text = "".join(f"User: q{i % 7}?\nAssistant: a{i % 5}.\n" for i in range(300))
    assert chat.format_rate(lm, text, temperature=1.0) < 0.01  # an untrained model is not in turn
    _train(lm, corpus.batches(text, 16, SMALL.context, seed=0), steps=60, lr=1e-2)
    starts = [i for i in range(SMALL.context, len(text)) if text.startswith(chat.ASSISTANT, i)]
    greedy = generate.generate(lm, [text[s + n - SMALL.context - 1:s] for s in starts], n, temperature=0)
    share = sum(g == chat.ASSISTANT for g in greedy) / len(starts)
    assert 0 < share and chat.format_rate(lm, text, prompts=len(starts), temperature=0) == pytest.approx(share)
