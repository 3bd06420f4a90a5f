"""AdamW with HF's linear warmup + linear decay schedule and global-norm clipping (the paper's setup)."""
from __future__ import annotations

import math
from typing import Any

import optax


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """HF `TrainingArguments.get_warmup_steps`: ceil(ratio * total)."""
    return math.ceil(warmup_ratio * total_steps)


def linear_schedule(peak_lr: float, total_steps: int, warmup_ratio: float) -> optax.Schedule:
    """HF `get_linear_schedule_with_warmup`: 0 -> peak over the warmup, then linearly to 0 at `total_steps`.

    The learning rate used at step s (0-based) is lr(s), as in HF where the scheduler steps after
    each optimizer step.
    """
    warm = warmup_steps(total_steps, warmup_ratio)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak_lr, warm),
         optax.linear_schedule(peak_lr, 0.0, max(total_steps - warm, 1))],
        boundaries=[warm])


def make_optimizer(train_cfg: Any, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(clip -> AdamW) transformation and its schedule, from the `train` config section."""
    schedule = linear_schedule(train_cfg.learning_rate, total_steps, train_cfg.warmup_ratio)
    parts = []
    if train_cfg.grad_clip:
        parts.append(optax.clip_by_global_norm(train_cfg.grad_clip))
    parts.append(optax.adamw(schedule, b1=train_cfg.adam_b1, b2=train_cfg.adam_b2,
                             eps=train_cfg.adam_eps, weight_decay=train_cfg.weight_decay))
    return optax.chain(*parts), schedule
