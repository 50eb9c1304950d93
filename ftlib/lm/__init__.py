"""A tiny character-level language model, small enough to read and to train on a laptop CPU.

One job per module: ``tokenizer`` (96 characters), ``corpus`` (the shipped prose snapshot and its batches),
``model`` (a decoder-only transformer with RoPE), ``bits`` (bits per character; training is ``ftlib.train.fit``),
``generate`` (seeded sampling), ``chat`` (self-chat dialogues built from the snapshot), ``finetune`` (full or
LoRA fine-tuning), ``context`` (reading past the training context: RoPE scaling, loss by position, the long
fine-tune, a recall task), ``retrieval`` (key-value records in the LongChat-Lines style and their scorer). The
shipped TinyLMs and their seeded rebuilds are the course's: ``ftlib.course.pretrain_lm`` and
``ftlib.course.pretrain_retrieval``.
"""

__all__ = ["bits", "chat", "context", "corpus", "finetune", "generate", "model", "retrieval", "tokenizer"]
