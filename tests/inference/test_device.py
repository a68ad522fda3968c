"""--device: auto, cpu, cuda, cuda:N, mps; every wrong choice a clear InputError."""

from __future__ import annotations

import pytest
import torch

from bayescellseg.errors import InputError
from bayescellseg.inference.device import resolve_device


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_cpu_without_cuda(no_cuda: None) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_takes_the_first_gpu(two_gpus: None) -> None:
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 0)) == torch.device("cuda", 0)


def test_gpu_index_beyond_the_count_is_named(two_gpus: None) -> None:
    with pytest.raises(
        InputError, match=r"'cuda:2' requested but torch sees 2 CUDA devices \(cuda:0-1\)"
    ):
        resolve_device("cuda:2")


def test_cuda_without_a_gpu_says_why(no_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(
        InputError, match=r"^device: 'cuda' requested but this torch .* CPU-only build"
    ) as err:
        resolve_device("cuda")
    assert str(err.value).endswith("; use device='cpu' or device='auto'")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    with pytest.raises(InputError, match="torch sees no CUDA GPU"):
        resolve_device("cuda:0")


def test_mps_without_support_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: False)
    with pytest.raises(InputError, match=r"^device: 'mps' requested but this torch .* no MPS"):
        resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(InputError, match="MPS is not available on this machine"):
        resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "meta"])
def test_unknown_devices_list_the_choices(name: str) -> None:
    with pytest.raises(InputError, match=r"device .* use auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)
