"""Tests of qkvcourse.profiling, the time and memory harness of chapter 8."""
import math
import sys

import pytest
import torch

import qkvcourse as qc
from qkvcourse import profiling


def test_power_law_fit_recovers_exponent_and_factor():
    xs = [128, 256, 512, 1024, 2048]
    for a, c in [(2.0, 3e-6), (1.0, 0.5), (0.5, 7.0)]:
        fa, fc = profiling.power_law_fit(xs, [c * x**a for x in xs])
        assert fa == pytest.approx(a, abs=1e-9)
        assert fc == pytest.approx(c, rel=1e-9)


def test_power_law_fit_of_an_exponential_is_not_a_constant_slope():
    # An exponential is not a power law: the local log-log slope keeps growing with x
    xs = [16, 32, 64, 128]
    ys = [math.exp(x / 16) for x in xs]
    slopes = [profiling.power_law_fit(xs[i:i + 2], ys[i:i + 2])[0] for i in range(3)]
    assert slopes[0] < slopes[1] < slopes[2]
    assert slopes[-1] > 2 * slopes[0]


@pytest.mark.parametrize("xs, ys", [([1], [1]), ([1, 2], [1]), ([0, 1], [1, 2]),
                                     ([1, 2], [-1, 2]), ([3, 3], [1, 2])])
def test_power_law_fit_rejects_bad_input(xs, ys):
    with pytest.raises(ValueError):
        profiling.power_law_fit(xs, ys)


def test_steady_timing_uses_one_thread_on_cpu_and_restores():
    before = torch.get_num_threads()
    with profiling.steady_timing("cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("path", ["explicit", "fused"])
def test_attention_step_matches_reference_and_computes_gradients(path):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 20, 8, requires_grad=True) for _ in range(3))
    out = profiling.attention_step(path, q, k, v, backward=True)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), -1) @ v
    torch.testing.assert_close(out, expected.detach(), atol=1e-5, rtol=1e-5)
    assert q.grad is None  # gradients computed, not accumulated
    out = profiling.attention_step(path, q.detach(), k.detach(), v.detach())
    torch.testing.assert_close(out, expected.detach(), atol=1e-5, rtol=1e-5)


def test_attention_step_rejects_unknown_path():
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="path"):
        profiling.attention_step("flash", q, q, q)


def test_clock_is_cpu_time_on_cpu_and_wall_time_elsewhere():
    import time
    assert profiling.clock("cpu") is time.process_time
    assert profiling.clock(torch.device("cpu")) is time.process_time
    assert profiling.clock("cuda") is time.perf_counter


def test_time_call_counts_computation_not_sleep():
    import time
    busy = lambda: sum(i * i for i in range(200_000))
    assert profiling.time_call(busy, repeat=3) > 0.002
    # sleeping uses no CPU: on the CPU clock it costs (almost) nothing
    assert profiling.time_call(lambda: time.sleep(0.05), repeat=2, warmup=0) < 0.02


def test_time_call_returns_the_fastest_run():
    import time
    delays = iter([0.0, 0.0, 0.3, 0.1, 0.2])  # two warm-up calls, then three timed ones
    def fn():
        d = next(delays)
        end = time.process_time() + d
        while time.process_time() < end:  # busy for d seconds of CPU time
            pass
    t = profiling.time_call(fn, repeat=3, warmup=2)
    assert 0.05 < t < 0.2


def test_time_attention_is_positive_and_grows_with_length():
    with profiling.steady_timing():
        short = profiling.time_attention("explicit", 64, repeat=5)
        long = profiling.time_attention("explicit", 1024, repeat=3)
    assert 0 < short < long


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux-only")
def test_peak_rss_bytes_sees_a_large_allocation():
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    before = profiling.peak_rss_bytes()
    assert before >= rss
    # enough to lift the resident memory 64 MiB above the earlier peak of this process
    big = torch.ones((before - rss + 64 * 2**20) // 4)  # written, so its pages are resident
    after = profiling.peak_rss_bytes()
    del big
    assert after - before >= 48 * 2**20


def test_peak_attention_memory_on_cpu_explicit_stores_the_matrix_fused_does_not():
    n, heads = 1024, 2
    peak = profiling.peak_attention_memory([("explicit", n), ("fused", n)], heads=heads)
    matrix = heads * n * n * 4  # one (B, H, n, n) float32 matrix, B = 1
    assert set(peak) == {("explicit", n), ("fused", n)}
    for result in peak.values():
        assert set(result) == {"forward", "forward+backward"}
        assert result["forward+backward"] >= result["forward"] >= 0
    # the explicit path holds the scores and the weights at once; the fused one neither
    assert peak["explicit", n]["forward"] >= 1.5 * matrix
    assert peak["fused", n]["forward"] < 0.5 * matrix


def test_peak_attention_memory_rejects_bad_configs():
    with pytest.raises(ValueError, match="path"):
        profiling.peak_attention_memory([("flash", 128)])
    with pytest.raises(ValueError, match="cpu"):
        profiling.peak_attention_memory([("fused", 128)], device="meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_peak_attention_memory_on_cuda():
    n = 2048
    peak = profiling.peak_attention_memory([("explicit", n), ("fused", n)], device="cuda")
    matrix = 2 * n * n * 4
    assert peak["explicit", n]["forward"] >= matrix
    assert peak["fused", n]["forward"] < matrix


def test_exported_from_the_package():
    assert qc.profiling is profiling
    assert qc.power_law_fit is profiling.power_law_fit
    assert qc.peak_attention_memory is profiling.peak_attention_memory
    assert qc.time_attention is profiling.time_attention
