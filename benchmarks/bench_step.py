"""Time full training steps of the study's VAEs against the machine's BLAS peak;
profile them per layer; time the start-up of ``train``. See benchmarks/README.md.

    python benchmarks/bench_step.py --threads 1,2 --json
    python benchmarks/bench_step.py --pairs deep/cifar10 --profile
    python benchmarks/bench_step.py --startup       # needs TINYVAE_DATA_DIR

``python -m tinyvae bench`` is the package's short version (step times only).
"""
import sys

from benchlib import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
