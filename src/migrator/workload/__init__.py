"""Stage 2, workload: what the GPUs are asked to do, and what an allocation earns.

``tenant``, ``models`` (model profiles), ``traces``, ``forecast``, ``scenario`` (YAML
deployments), ``settings`` (the planner settings a scenario carries), and the Goodput
estimator ``goodput`` with its Numba kernels ``_kernels`` (plain twins: ``_reference``).
Uses geometry only.
"""
