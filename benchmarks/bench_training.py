r"""Training-step throughput on SmolLM2-135M: our jitted step vs PyTorch (eager and torch.compile).

python benchmarks/bench_training.py [--batch=4] [--seq=128] [--steps=4] [--modes=lora,full] [--out=FILE.json]

Both sides run the same step on the same weights and batch: forward, next-token loss on every token,
backward, global-norm clipping 1.0 and AdamW; LoRA r=64, alpha=16, dropout 0.1 on q_proj and v_proj
with a frozen base (PyTorch: a LoRA wrapper around nn.Linear, as PEFT builds it). fp32 on CPU.
MFU = model FLOPs (trainer.train_flops_per_token) per second / a measured fp32 matmul peak.
Also measured: host-RAM peak while streaming the checkpoint in (t5x_like.hf_io.load_params) vs its size on disk.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

LORA = dict(rank=64, alpha=16.0, dropout=0.1, targets=("q_proj", "v_proj"))


def timed(step, n: int) -> float:
    """Seconds per call of `step()` (which must block until done), after two warm-up calls."""
    step()
    step()
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def jax_step_time(model_dir: str, mode: str, tokens: np.ndarray, steps: int) -> float:
    """Our train step (trainer.build_train_step, jit + donation) on one device."""
    import jax
    import jax.numpy as jnp
    import flax.linen as nn
    from t5x_like import hf_io, optimizers, trainer
    from t5x_like.models import lora as lora_lib
    from t5x_like.models.config import LoraConfig
    from t5x_like.models.api import DecoderModel
    from t5x_like.models.llama import init_params
    from t5x_like.train_state import init_state, split_trainable
    from configs.base import get_train_config

    config, base = hf_io.load_model_dir(model_dir)
    if mode == "lora":
        config = config.replace(lora=LoraConfig(**LORA))
        adapters = lora_lib.split_lora(nn.meta.unbox(init_params(config, jax.random.PRNGKey(0))))[1]
        params = lora_lib.combine(base, adapters)
    else:
        params = base
    trained, frozen = split_trainable(params, mode)
    tx, schedule = optimizers.make_optimizer(get_train_config(), 1000)
    state = init_state(trained, tx, jax.random.PRNGKey(0))
    step = jax.jit(trainer.build_train_step(DecoderModel(config, deterministic=False), tx, schedule, 1), donate_argnums=(0,))
    b, t = tokens.shape
    batch = {"tokens": jnp.asarray(tokens), "positions": jnp.broadcast_to(jnp.arange(t), (b, t)),
             "valid": jnp.ones((b, t), bool), "weights": jnp.ones((b, t), jnp.float32)}
    holder = {"state": state}

    def one():
        holder["state"], metrics = step(holder["state"], frozen, batch)
        jax.block_until_ready(metrics["loss"])

    return timed(one, steps)


def torch_step_time(model_dir: str, mode: str, tokens: np.ndarray, steps: int, compiled: bool) -> float:
    """The same step in PyTorch: transformers' LlamaForCausalLM (+ LoRA wrappers), AdamW, clipping."""
    import torch
    import transformers

    class LoraLinear(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear):
            super().__init__()
            self.base = base
            self.lora_A = torch.nn.Linear(base.in_features, LORA["rank"], bias=False)
            self.lora_B = torch.nn.Linear(LORA["rank"], base.out_features, bias=False)
            torch.nn.init.zeros_(self.lora_B.weight)
            self.dropout = torch.nn.Dropout(LORA["dropout"])
            self.scale = LORA["alpha"] / LORA["rank"]

        def forward(self, x):
            return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scale

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    if mode == "lora":
        model.requires_grad_(False)
        for layer in model.model.layers:
            for name in LORA["targets"]:
                setattr(layer.self_attn, name, LoraLinear(getattr(layer.self_attn, name)))
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ids = torch.tensor(tokens, dtype=torch.long)

    def loss_and_backward():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss

    forward_backward = torch.compile(loss_and_backward) if compiled else loss_and_backward

    def one():
        forward_backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return timed(one, steps)


LOAD_PROBE = r"""
import json, os, resource, sys, psutil
import jax
from t5x_like import hf_io
from t5x_like.models.config import ModelConfig
path = sys.argv[1]
config = ModelConfig.from_hf_dir(path)
jax.block_until_ready(jax.numpy.zeros(1))
before = psutil.Process().memory_info().rss
params = hf_io.load_params(path, config)
jax.block_until_ready(params)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
disk = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
print(json.dumps({"disk_bytes": disk, "peak_increase_bytes": peak - before, "ratio": (peak - before) / disk}))
"""


def load_memory(model_dir: str) -> dict:
    """Host-RAM peak increase while loading the checkpoint, in a fresh process (ru_maxrss)."""
    out = subprocess.run([sys.executable, "-c", LOAD_PROBE, model_dir], cwd=REPO, capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=REPO))
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(impl: str, mode: str, batch: int, seq: int, steps: int) -> dict:
    """One (implementation, mode) measurement; the matmul peak is measured in the same process, right after."""
    from t5x_like import gguf, trainer
    from t5x_like.models.config import LoraConfig, ModelConfig
    model_dir = str(gguf.ensure_smollm2())
    config = ModelConfig.from_hf_dir(model_dir)
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (batch, seq)).astype(np.int32)
    if impl == "jax":
        seconds = jax_step_time(model_dir, mode, tokens, steps)
    else:
        seconds = torch_step_time(model_dir, mode, tokens, steps, compiled=impl == "torch_compile")
    peak = trainer.measured_matmul_flops(seconds=2.0, size=2048)
    flops = trainer.train_flops_per_token(config.replace(lora=LoraConfig(**LORA)) if mode == "lora" else config,
                                          seq, mode)
    return {"step_s": seconds, "tokens_per_s": batch * seq / seconds, "matmul_peak_gflops": peak / 1e9,
            "mfu": flops * batch * seq / seconds / peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--modes", default="lora,full")
    parser.add_argument("--impls", default="jax,torch_eager,torch_compile")
    parser.add_argument("--only", default="", help=argparse.SUPPRESS)  # impl:mode, run in a child process
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.only:
        impl, mode = args.only.split(":")
        print(json.dumps(measure(impl, mode, args.batch, args.seq, args.steps)))
        return

    from t5x_like import gguf
    report = {"batch": args.batch, "seq": args.seq, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "modes": {}}
    for mode in args.modes.split(","):
        results = {}
        for impl in args.impls.split(","):  # each in a fresh process: no shared thread pools or caches
            out = subprocess.run([sys.executable, __file__, f"--only={impl}:{mode}", f"--batch={args.batch}",
                                  f"--seq={args.seq}", f"--steps={args.steps}"], cwd=REPO, capture_output=True,
                                 text=True, check=True, env=dict(os.environ, PYTHONPATH=REPO))
            results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        for other in ("torch_eager", "torch_compile"):
            if other in results and "jax" in results:
                results[f"speedup_vs_{other}"] = results[other]["step_s"] / results["jax"]["step_s"]
        report["modes"][mode] = results
        print(json.dumps({mode: results}, indent=1), flush=True)
    report["load_memory"] = load_memory(str(gguf.ensure_smollm2()))
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
