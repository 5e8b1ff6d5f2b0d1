"""The latent cache on real files: exact round trips, keys, LRU eviction, corruption = miss."""

from __future__ import annotations

import torch

from dclip_desktop.library.cache import LatentCache, LatentKey


def key(i: int = 0, base: str = "a" * 64, t0: int = 400, s_for: int = 40, precision: str = "fp32") -> LatentKey:
    return LatentKey(base, f"{i:064x}", t0, s_for, precision)


def test_round_trip_is_bit_exact_and_stats_count(tmp_path):
    cache = LatentCache(tmp_path / "c")
    torch.manual_seed(0)
    z = torch.randn(3, 16, 16)
    assert cache.get(key()) is None
    cache.put(key(), z)
    got = cache.get(key())
    assert got is not None and got.dtype == z.dtype and torch.equal(got, z)
    zh = torch.randn(3, 8, 8).to(torch.bfloat16)
    cache.put(key(1, precision="bf16"), zh)
    assert torch.equal(cache.get(key(1, precision="bf16")), zh)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.puts) == (2, 1, 2)
    assert LatentCache(tmp_path / "c").get(key()) is not None  # persists across instances


def test_every_key_field_matters(tmp_path):
    cache = LatentCache(tmp_path / "c")
    cache.put(key(), torch.ones(2))
    for other in (key(base="b" * 64), key(1), key(t0=401), key(s_for=200), key(precision="bf16")):
        assert cache.get(other) is None
    assert cache.stats.misses == 5 and cache.stats.hits == 0


def test_get_many_put_many(tmp_path):
    cache = LatentCache(tmp_path / "c")
    keys = [key(i) for i in range(4)]
    cache.put_many(keys[:2], [torch.full((2,), float(i)) for i in range(2)])
    got = cache.get_many(keys)
    assert [g is not None for g in got] == [True, True, False, False]
    assert float(got[1][0]) == 1.0


def test_lru_eviction_under_a_tiny_cap(tmp_path):
    z = torch.zeros(256)  # 1 kB of data + a small header
    probe = LatentCache(tmp_path / "probe")
    probe.put(key(), z)
    one = probe.size_bytes()
    cache = LatentCache(tmp_path / "c", cap_bytes=3 * one + one // 2)  # room for three
    for i in range(3):
        cache.put(key(i), z)
    assert cache.get(key(0)) is not None  # 0 is now the most recently used, 1 the least
    cache.put(key(3), z)
    assert cache.stats.evictions == 1
    assert cache.get(key(1)) is None
    assert all(cache.get(key(i)) is not None for i in (0, 2, 3))
    assert cache.size_bytes() <= cache.cap_bytes
    cache.put_many([key(i) for i in range(10, 15)], [z] * 5)
    assert cache.size_bytes() <= cache.cap_bytes
    assert all(cache.get(key(i)) is not None for i in (12, 13, 14))
    assert cache.clear() == 3 and cache.size_bytes() == 0


def test_corrupt_or_foreign_file_is_a_miss_and_deleted(tmp_path):
    cache = LatentCache(tmp_path / "c")
    cache.put(key(), torch.randn(64))
    path = cache.path_for(key())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    assert cache.get(key()) is None and not path.exists()
    assert cache.stats.corrupt == 1
    cache.put(key(), torch.randn(64))
    path.write_bytes(b"\xff" * 40)
    assert cache.get(key()) is None and not path.exists()
    # A valid file under the wrong name (another key's latent) is not trusted either.
    cache.put(key(1), torch.randn(64))
    path.write_bytes(cache.path_for(key(1)).read_bytes())
    assert cache.get(key()) is None
    cache.put(key(), torch.ones(3))
    assert torch.equal(cache.get(key()), torch.ones(3))


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(tmp_path / "envcache"))
    assert LatentCache().root == tmp_path / "envcache"
