"""Distributed training, applied to the model from outside: process groups, device meshes and parallelisms.

A model in ``scratchllm.model`` holds no collective. Everything that spreads training over several devices lives
here and rewrites a finished model, in the order of torchtitan's ``parallelize_llama``:

- ``dist.py``: one process per device, started by ``torchrun`` (or none: one process without a launcher runs with no
  process group at all), the backend (NCCL on GPUs, Gloo on CPUs), a timeout so a dead rank stops the others, and
  the device mesh whose named dimensions (``pp``, ``dp``, ``tp``) each parallelism uses;
- ``parallelize.py``: ``parallelize(model, mesh, cfg)``: tensor-parallel plans, activation checkpointing,
  ``torch.compile``, then FSDP or DDP;
- ``tensor_parallel.py`` / ``megatron.py``: Megatron-style tensor parallelism, as a DTensor plan and by hand;
- ``fsdp.py``: fully sharded data parallelism (FSDP2, ``fully_shard``) per block;
- ``pipeline.py``: pipeline stages and schedules; ``plan.py``: the 3D planner.

Chapter 4 of the manual (docs/04-distributed-training.md) explains what each strategy shards and communicates.
"""
