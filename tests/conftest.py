"""Shared test setup: one thread per test process (the machine has 2 cores shared by several engineers)."""

import torch

torch.set_num_threads(1)
