"""tinyvae.heap: malloc keeps the memory a step frees, so the next step faults no page in."""
import subprocess
import sys

import pytest

from tinyvae import train as train_mod
from tinyvae.config import TrainConfig

from synthetic import tiny_data

# A step's pattern: three 16 MB arrays made and freed again, 12 times; the page faults of
# the last 10 rounds. By default glibc raises its mmap threshold to 16 MB after the first
# round, and then gives back the free top of the heap (more than twice 16 MB) again and
# again: about 10,000 faults (40 MB) here.
ROUNDS = """
import resource, sys
import numpy as np
from tinyvae.heap import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for i in range(12):
    if i == 2:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(4 * 2**20, np.float32) for _ in range(3)]
    del arrays
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode):
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page faults counted on Linux (glibc)")
def test_kept_memory_faults_no_page_in_again():
    kept, default = faults("keep"), faults("default")
    assert default > 2000                         # without it the pattern faults: 8 MB or more
    assert kept < 500                             # with it, 480 MB made and freed, hardly a page faulted


def test_training_keeps_freed_memory_before_its_first_step_only(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(train_mod, "keep_freed_memory", lambda: calls.append(1))
    cfg = TrainConfig(epochs=1, batch_size=10, seed=0)
    data = tiny_data()
    train_mod.train(cfg, out_dir=str(tmp_path), data=data, progress=False)
    assert calls == [1]
    train_mod.train(cfg, out_dir=str(tmp_path), data=data, resume=True, progress=False)
    assert calls == [1]                           # a finished run trains no more: malloc left alone
