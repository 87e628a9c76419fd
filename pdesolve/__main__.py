"""``python -m pdesolve`` (and ``torchrun -m pdesolve`` for distributed runs): the ``pdesolve`` command."""

from .cli import main

raise SystemExit(main())
