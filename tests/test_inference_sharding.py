"""Scoring and generation on 8 CPU devices under several meshes equal one device and transformers.

The worker (tests/sharded_inference_worker.py) runs in a fresh 8-device process; this test compares
its outputs: log-likelihoods (packed rows, shared-context branches) within 1e-5 of the single-device
engine and of transformers' PyTorch forward on the same saved weights, and identical greedy tokens.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PYTHONPATH": str(ROOT),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "sharded_inference_worker.py"), str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def hf_logprobs(model_dir: pathlib.Path, requests: list) -> list[float]:
    """Sum of transformers' log_softmax over each continuation, one unpadded sequence at a time."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for context, continuation in requests:
            whole = torch.tensor([context + continuation])
            logp = torch.log_softmax(model(whole[:, :-1]).logits[0].double(), -1)
            n = len(continuation)
            out.append(float(logp[-n:].gather(1, whole[0, -n:, None]).sum()))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama_tied", "mistral_window"])
def test_every_mesh_matches_one_device_and_transformers(sharded, name):
    out, results = sharded
    meshes = results["models"][name]
    assert set(meshes) == {"1x1x1", "8x1x1", "2x2x2", "1x4x2", "1x2x4"}
    single = meshes["1x1x1"]
    np.testing.assert_allclose(single["logprob"], hf_logprobs(out / name, results["requests"]), rtol=1e-5, atol=1e-5)
    for mesh, got in meshes.items():
        np.testing.assert_allclose(got["logprob"], single["logprob"], rtol=1e-5, atol=1e-5, err_msg=mesh)
        assert got["is_greedy"] == single["is_greedy"], mesh
        assert got["tokens"] == single["tokens"], mesh
        assert all(len(t) == 12 for t in got["tokens"])
    # The weights really are split: tensor-sharded heads / vocab, fsdp-sharded embed; rows over data x fsdp.
    specs = meshes["2x2x2"]["param_specs"]
    assert specs["['layers_0']['self_attn']['k_proj']['kernel']"] == "P('fsdp', 'tensor')"
    assert specs["['embed_tokens']['embedding']"] == "P('tensor', 'fsdp')"
    assert meshes["8x1x1"]["rows_per_batch"] == 8 and meshes["1x4x2"]["rows_per_batch"] == 4
    # Packing put several requests in each row: 19 requests in 2 batches of 4 rows of 64 tokens.
    assert len(results["requests"]) == 19 and single["batches"] == 2
