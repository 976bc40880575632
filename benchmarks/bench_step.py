"""Time full training steps of the study's VAEs; see tinyvae/bench.py and benchmarks/README.md.

    python benchmarks/bench_step.py --threads 1,2 --json
    python benchmarks/bench_step.py --pairs deep/cifar10 --profile
    python benchmarks/bench_step.py --startup       # needs TINYVAE_DATA_DIR

Same as ``python -m tinyvae bench -- ARGS``.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from tinyvae.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
