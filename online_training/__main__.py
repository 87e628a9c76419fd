"""``python -m online_training STUDY.yaml`` (under ``mpiexec -n N`` for the online mode)."""

from .entry import main

raise SystemExit(main())
